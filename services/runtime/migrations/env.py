from services.runtime.models import Base
from shared.migrations import run_env

run_env("runtime", Base.metadata)
