"""Fire scenarios for hw-sim: sounds, room physics and a player driven by scenario data files."""
