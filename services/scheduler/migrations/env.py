from services.scheduler.models import Base
from shared.migrations import run_env

run_env("scheduler", Base.metadata)
