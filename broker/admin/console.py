"""The admin web console (``/admin``): placeholder until the console lands."""

from flask import Blueprint

blueprint = Blueprint("admin_console", __name__)
