"""The broker process: configuration, connections, request handling."""
