"""Text: prompts and chat templates, sampling, and the streaming generation loop."""
