from services.activator.models import Base
from shared.migrations import run_env

run_env("activator", Base.metadata)
