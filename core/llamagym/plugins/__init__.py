"""The plugin system: hook specs, the manager that loads entry points, the one hook-calling path, the registry of agents and environments, and the built-in plugins."""
