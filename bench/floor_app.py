"""The framework floor: a hello-world Flask view, served by gunicorn's gevent workers with hipush's settings
(bench/systems.FloorServer); what any Flask app on this machine answers at most per second."""
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "hello"
