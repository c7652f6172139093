"""Hot-loading, TF Serving compatible model server (see docs/serving.md)."""
