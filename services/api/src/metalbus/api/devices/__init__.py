"""Devices: non-deployable things on the network, their interfaces and addresses."""
