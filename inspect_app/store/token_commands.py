"""``inspect-app token add|list|revoke``: API tokens. ``add`` prints the new token alone on stdout,
once (only its hash is stored); a new or revoked token counts from the API's next request."""

from __future__ import annotations

import typer

from inspect_app.clikit import console, out, user_errors
from inspect_app.store.commands import StoreOption


def register(app: typer.Typer) -> None:
    tokens = typer.Typer(no_args_is_help=True, help="API tokens: station (post images, triggers), viewer (read "
                                                    "results, metrics), admin (both).")
    app.add_typer(tokens, name="token")

    @tokens.command("add")
    @user_errors
    def add(name: str = typer.Argument(..., help="Who the token is for (a station, a dashboard, a person)."),
            role: str = typer.Option(..., "--role", help="station, viewer or admin."),
            store_url: str | None = StoreOption) -> None:
        """Create a token and print it (alone, once: keep it; it cannot be shown again)."""
        from inspect_app.store import ResultsStore
        from inspect_app.store.tokens import parse_api_role

        checked = parse_api_role(role)
        with ResultsStore(store_url) as store:
            token = store.add_token(name, checked, by="cli")
        typer.echo(token)
        console.print(f"token {name!r} ({checked}) added; send it as 'Authorization: Bearer <token>'")

    @tokens.command("list")
    @user_errors
    def list_tokens(store_url: str | None = StoreOption) -> None:
        """List tokens (names, roles, state; never the tokens themselves)."""
        from rich.table import Table

        from inspect_app.store import ResultsStore

        with ResultsStore(store_url) as store:
            rows = store.tokens()
        if not rows:
            console.print("no tokens yet: add one with inspect-app token add NAME --role viewer")
            return
        table = Table()
        for col in ("name", "role", "state", "created (UTC)", "by"):
            table.add_column(col)
        for token in rows:
            state = "active" if token.active else f"revoked {token.revoked_at:%Y-%m-%d %H:%M}"
            table.add_row(token.name, token.role, state, token.created.strftime("%Y-%m-%d %H:%M"), token.created_by)
        out.print(table)

    @tokens.command("revoke")
    @user_errors
    def revoke(name: str = typer.Argument(..., help="The token's name."),
               store_url: str | None = StoreOption) -> None:
        """Revoke a token: refused from the API's next request on."""
        from inspect_app.store import ResultsStore

        with ResultsStore(store_url) as store:
            store.revoke_token(name, by="cli")
        out.print(f"revoked {name}")
