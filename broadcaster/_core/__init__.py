"""The broadcaster core: an anyio event hub. Imports anyio only (no grpc, no prometheus,
no asyncio or trio), so it runs on either backend and every edge builds on it."""
