"""``inspect-app user add|list``: accounts for the station UI (engineers need a password)."""

from __future__ import annotations

import sys

import typer

from inspect_app.clikit import console, out, user_errors

StoreOption = typer.Option(None, "--store", help="Results store URL (default $INSPECT_APP_STORE_URL or "
                                                 "sqlite:///data/store/results.db).")


def _read_password(role: str, from_stdin: bool) -> str | None:
    from inspect_app.store import StoreError

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        hint = " (empty: no password)" if role == "operator" else ""
        password = typer.prompt(f"Password{hint}", default="" if role == "operator" else None, hide_input=True,
                                confirmation_prompt=True, show_default=False)
    if not password and role == "engineer":
        raise StoreError("an engineer needs a password")
    return password or None


def register(app: typer.Typer) -> None:
    users = typer.Typer(no_args_is_help=True, help="Station UI accounts: engineers (password) and operators.")
    app.add_typer(users, name="user")

    @users.command("add")
    @user_errors
    def add(name: str = typer.Argument(..., help="Login name."),
            role: str = typer.Option(..., "--role", help="engineer or operator."),
            password_stdin: bool = typer.Option(False, "--password-stdin",
                                                help="Read the password from the first line of stdin "
                                                     "(an empty line: no password, operators only)."),
            store_url: str | None = StoreOption) -> None:
        """Add a user; the password is prompted twice (operators may leave it empty)."""
        from inspect_app.store import ResultsStore
        from inspect_app.store.accounts import parse_role

        checked = parse_role(role)
        password = _read_password(checked, password_stdin)
        with ResultsStore(store_url) as store:
            store.add_user(name, checked, password, by="cli")
        out.print(f"added {checked} {name}" + ("" if password else " (no password)"))

    @users.command("list")
    @user_errors
    def list_users(store_url: str | None = StoreOption) -> None:
        """List users and their roles."""
        from rich.table import Table

        from inspect_app.store import ResultsStore

        with ResultsStore(store_url) as store:
            rows = store.users()
        if not rows:
            console.print("no users yet: add one with inspect-app user add NAME --role engineer")
            return
        table = Table()
        for col in ("name", "role", "password", "created (UTC)"):
            table.add_column(col)
        for user in rows:
            table.add_row(user.name, user.role, "yes" if user.has_password else "no",
                          user.created.strftime("%Y-%m-%d %H:%M"))
        out.print(table)
