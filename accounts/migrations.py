from slipway.db import database

from .models import Account


def initial():
    database.create_tables([Account], safe=True)


MIGRATIONS = [
    (1, "accounts", initial),
]
