"""The four back-end services; each is its own process with its own schema."""
