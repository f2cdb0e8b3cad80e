FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY support ./support
COPY handoff ./handoff
COPY web ./web
COPY evals ./evals
RUN pip install --no-cache-dir .
ENV SWITCHBOARD_DATA_DIR=/data SWITCHBOARD_WEB_DIR=/app/web
EXPOSE 8000
CMD ["switchboard", "serve", "--host", "0.0.0.0", "--port", "8000"]
