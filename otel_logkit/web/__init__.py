"""Request context for web frameworks: ASGI (FastAPI/Starlette) and WSGI (Flask)."""
