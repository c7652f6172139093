"""Generated code of the project's own gRPC services (from proto/ by `make proto`; do not edit)."""
