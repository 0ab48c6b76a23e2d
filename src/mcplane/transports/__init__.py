"""Transports: stdio, Streamable HTTP and WebSocket, server and client side."""
