"""Designer: owns workspaces, keys, folders, journeys and their versions, templates, connectors."""
