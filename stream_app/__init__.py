"""The stream worker: a Faust app (``create_app``) kept thin around plain functions over Redis."""
