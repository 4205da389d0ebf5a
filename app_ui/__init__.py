"""The Gradio app's parts (``app.py`` puts them together): widgets and display helpers, the event
handlers (one per API endpoint) and the page, one builder per tab. Nothing in ``pipeline/`` imports
Gradio: the studio's steps are :class:`pipeline.studio.Studio`."""
