"""Entry files for launchers that take a script path (``spark-submit``)."""
