"""``edge serve``: an OpenAI-compatible local server and its offline browser chat page.

``openai_schema`` turns request bodies into the runtime's messages and options (and builds
OpenAI's response and error objects), ``media`` decodes images and audio under the limits,
``model_queue`` is the single worker thread that owns the pipeline, ``app`` holds the routes
and the guards (auth, origin, body size), ``command`` the CLI command. The page is ``static/``.
"""
