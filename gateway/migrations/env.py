from gateway.models import SCHEMA, Base
from shared.migrations import run_env

run_env(SCHEMA, Base.metadata)
