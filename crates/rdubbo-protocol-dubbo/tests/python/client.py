# Calls an rdubbo provider with the PyPI Dubbo client `python3-dubbo` (Dubbo protocol,
# Hessian2) and prints one JSON line per call: {"case": …, "ok": result} or {"case": …, "err": …}.
import json
import sys

from dubbo.client import DubboClient
from dubbo.codec.encoder import Object

host = sys.argv[1]
client = DubboClient('com.example.InteropService', host=host, version='1.0.0')

user = Object('com.example.User')
user['name'] = 'ann'
user['age'] = 42
user['tags'] = ['admin', 'ops']

cases = [
    # (Characters outside the BMP are left out: this client's own codec mangles them.)
    ('string', 'echo', 'h\u00e9llo \u4e2d\u6587'),
    ('int', 'echo', -7),
    ('long', 'echo', 5000000000),
    ('double', 'echo', 2.5),
    ('bool', 'echo', True),
    ('int list', 'echo', [[1, 2, 300000]]),
    ('string list', 'echo', [['x', 'y']]),
    ('object', 'echo', user),
    ('sum', 'sum', [[1, 2, 3, 4]]),
    ('user map', 'userMap', 'ann'),
    ('make user', 'makeUser', ['bob', 7]),
    ('fail', 'fail', 'boom'),
]
for name, method, args in cases:
    try:
        result = client.call(method, args)
        if isinstance(result, Object):
            result = dict(result)
        print(json.dumps({'case': name, 'ok': result}), flush=True)
    except Exception as e:  # the client raises its own exception types
        print(json.dumps({'case': name, 'err': type(e).__name__ + ': ' + str(e)}), flush=True)
