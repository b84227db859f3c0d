"""qrad_drivers: hardware drivers of the computing heater, one module per hardware family.

Each driver declares its channels (`ChannelSpec`) and produces `Reading`s with a `Quality`.
"""
