"""Helpers the exporters share: the lines they show the user (progress) and a torch net's multiply-adds (macs)."""
