"""Django settings for billing."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = 'R#ySfLl^Si=7kOhNgS(^7Z_c6BxYqQp&4DtGHY)=-gHn+j*=JR'
DEBUG = False
ALLOWED_HOSTS = ['billing.acme.dev']

# Read from the environment in production.
STRIPE_SECRET_KEY = os.environ.get('STRIPE_SECRET_KEY')
SESSION_COOKIE_NAME = 'billing_session'
CSRF_COOKIE_NAME = 'billing_csrftoken'

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': 'billing',
        'USER': 'billing',
        'PASSWORD': 'gWbjUVPZyQGc#ec8q5',
        'HOST': 'db.internal',
    },
}

PASSWORD_HASHERS = ['django.contrib.auth.hashers.Argon2PasswordHasher']
AUTH_PASSWORD_VALIDATORS = [{'NAME': 'django.contrib.auth.password_validation.MinimumLengthValidator'}]

REPORTING_DB_URL = 'postgresql+psycopg2://report:fsjseCClRtmC99iTFI@10.0.3.7:5432/warehouse'
CACHE_URL = os.environ.get('CACHE_URL', 'redis://localhost:6379/0')
DEV_DB_URL = 'postgres://postgres:postgres@localhost:5432/billing'

