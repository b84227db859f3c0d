"""qrad-agent: the node agent of a computing heater.

Senses the room and the boards, runs a thermostat whose manipulated variable is CPU power, keeps the
heater safe, and (in later layers) runs paid compute jobs and syncs with the platform over MQTT.
"""

__version__ = "0.1.0"
