"""HTTP controllers: OpenAI-compatible proxy routes, management routes, health."""
