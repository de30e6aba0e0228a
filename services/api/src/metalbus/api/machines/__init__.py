"""Machines and their life: the inventory, the status table, and the flows that drive them."""
