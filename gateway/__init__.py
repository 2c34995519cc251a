"""Gateway: the only public entry. Routes /v1 to the owning service."""
