"""mcplane as the OAuth 2.1 authorization server MCP clients log in through."""
