"""Shipped presets: one commented TOML file each. ``eqprop presets`` lists them; ``load_preset`` reads one."""
