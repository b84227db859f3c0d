"""Sandboxed compute jobs: the heater's heat source.

Layers, bottom up: ``config`` (the ``[jobs]`` section), ``model`` (manifest, statuses), ``bundle``
(signature and file checks), ``seccomp`` (the BPF filter), ``cgroups`` (per-job cgroups, v1 and v2),
``sandbox`` (the bubblewrap command line), ``runner`` (queue, slots, limits, results), ``heat`` (the jobs as a
power actuator: share, freeze, thaw, checkpoint) and ``cli`` (``qrad-agent jobs ...``).
"""
