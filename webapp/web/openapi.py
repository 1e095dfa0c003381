"""The OpenAPI 3.1 document of the JSON API and its docs page: stub, built by the OpenAPI work."""
from flask import Blueprint

bp = Blueprint("openapi", __name__)
