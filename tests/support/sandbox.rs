//! Starting moto (from the project's .venv) and the sandbox for tests.
