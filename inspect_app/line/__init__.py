"""Line integration: a station that takes frames from a camera, inspects each part once with the
one ``Inspector``, stores every result and tells the line's systems (MQTT, webhook, CSV)."""

from inspect_app.line.config import StationConfig, load_station_config, parse_station_config
from inspect_app.line.station import Station

__all__ = ["Station", "StationConfig", "load_station_config", "parse_station_config"]
