"""The admin JSON API (``/admin/api``): placeholder until the API lands."""

from flask import Blueprint

blueprint = Blueprint("admin_api", __name__)
