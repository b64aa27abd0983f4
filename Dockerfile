# DigiOne Login, the SSO broker: one image for every instance.
#
#   docker build -t digione-broker .
#   docker run -p 8000:8000 \
#     -e BROKER_BASE_URL=https://login.example.fi -e BROKER_REDIS_URL=redis://redis:6379/0 \
#     -e BROKER_SECRET_FILE=/run/secrets/broker -v /srv/broker/secret:/run/secrets/broker:ro \
#     -v /srv/broker/keys:/app/var/keys -v /srv/broker/registry:/app/var/registry \
#     -v /srv/broker/tenants:/app/tenants:ro -v /srv/broker/metadata:/app/metadata:ro \
#     digione-broker
#
# Settings come from BROKER_* environment variables and config/broker.yaml; secrets only from
# the environment or mounted files, never from the image.  docs/operations.md has the details.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BROKER_PORT=8000

# An unprivileged user with a fixed numeric id (so `runAsNonRoot` can check it).
RUN groupadd --system --gid 10001 broker \
 && useradd --system --uid 10001 --gid broker --home-dir /app --no-create-home --shell /usr/sbin/nologin broker

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.  No dev/test extras.
COPY pyproject.toml README.md /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The package itself, installed non-editable into site-packages (with the verification kit,
# digione_verify, which the broker verifies its own tokens with); the sources are removed after,
# so that nothing imports them by accident.  Then check that lxml and xmlsec share one libxml2.
COPY broker/ /src/broker/
COPY verify/src/ /src/verify/src/
RUN pip install --no-deps /src \
 && rm -rf /src \
 && cd / && python -c "import lxml.etree, xmlsec, broker.saml.xml_signatures, digione_verify" \
 && broker --help > /dev/null

# The deployment's folder (BROKER_HOME, broker/deployment.py): shared settings, tenant files and
# the cities' SAML metadata committed with the repository; a deployment may mount its own over
# them (BROKER_METADATA_DIR, default /app/metadata).  metadata/demo/ is kept out (.dockerignore).
ENV BROKER_HOME=/app
COPY config/ ./config/
COPY tenants/ ./tenants/
COPY attribute_maps/ ./attribute_maps/
COPY metadata/ ./metadata/
RUN mkdir -p /app/metadata /app/var/keys /app/var/registry \
 && chown -R broker:broker /app/var

USER 10001:10001

EXPOSE 8000

# Liveness only (the process answers); /readyz also checks Redis, for load balancers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BROKER_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["broker"]
CMD ["serve"]
