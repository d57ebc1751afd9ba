"""Hook implementations that ship with the core, registered through the same plugin manager as any other."""
