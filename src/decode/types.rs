//! PostgreSQL types as needed to turn their text output into JSON.
