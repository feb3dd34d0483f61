#!/usr/bin/env python3
"""A fake Stripe for local runs and tests: localstripe, patched to answer like the real API.

Run with the infra venv:

    infra/.venv/bin/python infra/stripe/launcher.py --port 0 [--state-dir DIR]

The first line on stdout is `LISTENING <port>` (flushed) once the server accepts connections;
logs go to stderr. SIGTERM or SIGINT stops it cleanly (exit status 0).

localstripe (PyPI) is imported and run in this process, bound to 127.0.0.1 only. On top of it:
  - PaymentIntent gains the fields async-stripe requires (amount_capturable, amount_received,
    confirmation_method, payment_method_types), `latest_charge` is an id unless expanded, and
    `last_payment_error` carries a `type`;
  - Charge gains amount_captured, billing_details and disputed (needed when expanded);
  - every Event has `pending_webhooks` (int) and `request`, in API responses and in deliveries;
  - card declines answer 402 with Stripe's card_error shape (code, decline_code, payment_intent);
  - POSTs honour `Idempotency-Key` (replay, or 400 idempotency_error on different parameters);
  - Checkout Sessions (payment mode, price_data line items), a hosted page at the session's
    `url`, and a test-only completion route.
See infra/stripe/README.md.
"""

import argparse
import asyncio
import contextvars
import hashlib
import html
import json
import logging
import os
import pickle
import signal
import socket
import sys
import tempfile
import time
import urllib.parse

sys.dont_write_bytecode = True  # write nothing outside --state-dir, not even __pycache__

from aiohttp import web  # noqa: E402

import localstripe  # noqa: E402
from localstripe import resources as ls  # noqa: E402
from localstripe import webhooks as ls_webhooks  # noqa: E402
from localstripe.errors import UserError  # noqa: E402
from localstripe.resources import (  # noqa: E402
    Charge, Customer, Event, PaymentIntent, PaymentMethod, Refund, StripeObject, random_id,
    schedule_webhook, store, try_convert_to_bool, try_convert_to_int)

log = logging.getLogger('fake-stripe')

# Filled in by main(): where this server answers (for Checkout Session urls) and options.
BASE_URL = 'http://127.0.0.1'
CONFIG = {'api_version': None, 'api_version_fixed': False, 'state_dir': None}

# Per-request context: the Stripe request id and idempotency key (copied into Events created
# while handling the request), and the payment method whose attach/charge was just declined.
_current_request = contextvars.ContextVar('current_request', default=None)
_last_declined_pm = contextvars.ContextVar('last_declined_pm', default=None)


# --------------------------------------------------------------------------------------------
# Persistence: localstripe pickles its store to /tmp/localstripe.pickle on every write. Point it
# at --state-dir (atomic replace), or turn it off.
# --------------------------------------------------------------------------------------------

def _state_file(name):
    return os.path.join(CONFIG['state_dir'], name) if CONFIG['state_dir'] else None


def _atomic_write(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.tmp-')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _store_load(self):
    path = _state_file('localstripe.pickle')
    if not path:
        return
    try:
        with open(path, 'rb') as f:
            old = pickle.load(f)
    except FileNotFoundError:
        return
    dict.clear(self)
    dict.update(self, old)


def _store_dump(self):
    path = _state_file('localstripe.pickle')
    if path:
        _atomic_write(path, pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))


ls.Store.try_load_from_disk = _store_load
ls.Store.dump_to_disk = _store_dump


def _save_webhooks():
    path = _state_file('webhooks.json')
    if path:
        hooks = {id: {'url': w.url, 'secret': w.secret, 'events': w.events}
                 for id, w in ls_webhooks._webhooks.items()}
        _atomic_write(path, json.dumps(hooks, indent=2).encode())


def _load_webhooks():
    path = _state_file('webhooks.json')
    if not path or not os.path.exists(path):
        return
    with open(path) as f:
        for id, w in json.load(f).items():
            ls_webhooks.register_webhook(id, w['url'], w['secret'], w['events'])


_orig_register_webhook = ls_webhooks.register_webhook


def _register_webhook(id, url, secret, events):
    _orig_register_webhook(id, url, secret, events)
    _save_webhooks()




# --------------------------------------------------------------------------------------------
# Card declines: which test card fails how, as in Stripe's testing docs.
# --------------------------------------------------------------------------------------------

_GENERIC = ('card_declined', 'generic_decline', 'Your card was declined.')
DECLINES = {
    '4000000000000002': _GENERIC,
    '4000000000000341': _GENERIC,
    '4000000000009995': ('card_declined', 'insufficient_funds',
                         'Your card has insufficient funds.'),
    '4000000000009987': ('card_declined', 'lost_card', 'Your card was declined.'),
    '4000000000009979': ('card_declined', 'stolen_card', 'Your card was declined.'),
    '4000000000000069': ('expired_card', 'expired_card', 'Your card has expired.'),
    '4000000000000127': ('incorrect_cvc', 'incorrect_cvc',
                         "Your card's security code is incorrect."),
    '4000000000000119': ('processing_error', 'processing_error',
                         'An error occurred while processing your card. '
                         'Try again in a little bit.'),
    '4242424242424241': ('incorrect_number', None, 'Your card number is incorrect.'),
}
# localstripe declines these only when attaching; Stripe declines them when charging too
# (that is what pm_card_visa_chargeDeclined, i.e. 4000000000000002, is for).
_ATTACH_DECLINED = {'4000000000000002', '4000000000009995', '4000000000009987',
                    '4000000000009979', '4000000000000069', '4000000000000127',
                    '4000000000000119', '4242424242424241'}


def _decline_for(pm):
    return DECLINES.get(getattr(pm, '_card_number', None), _GENERIC)


def _doc_url(code):
    return 'https://stripe.com/docs/error-codes/' + code.replace('_', '-')


def _lookup_pm(id):
    if not id:
        return None
    try:
        return PaymentMethod._api_retrieve(id)
    except UserError:
        return None


_orig_attaching_is_declined = PaymentMethod._attaching_is_declined
_orig_charging_is_declined = PaymentMethod._charging_is_declined


def _attaching_is_declined(self):
    declined = _orig_attaching_is_declined(self)
    if declined:
        _last_declined_pm.set(self)
    return declined


def _charging_is_declined(self):
    declined = _orig_charging_is_declined(self) or (
        getattr(self, 'type', None) == 'card' and
        getattr(self, '_card_number', None) in _ATTACH_DECLINED)
    if declined:
        _last_declined_pm.set(self)
    return declined


# Card and Source call PaymentMethod._attaching_is_declined(self) etc., so this covers them.
PaymentMethod._attaching_is_declined = _attaching_is_declined
PaymentMethod._charging_is_declined = _charging_is_declined

_orig_set_auth_failure = Charge._set_auth_failure


def _set_auth_failure(self):
    _orig_set_auth_failure(self)
    code, decline_code, message = _decline_for(_lookup_pm(self.payment_method))
    self.failure_code = code
    self.failure_message = message
    self._decline_code = decline_code


Charge._set_auth_failure = _set_auth_failure


# --------------------------------------------------------------------------------------------
# Charge: fields async-stripe's Charge requires (it is parsed when latest_charge is expanded).
# --------------------------------------------------------------------------------------------

_orig_charge_export = Charge._export


def _charge_export(self, expand=None):
    obj = _orig_charge_export(self, expand=expand)
    obj['amount_captured'] = (self.amount if self.captured and self.status == 'succeeded'
                              else 0)
    obj.setdefault('billing_details', {'address': None, 'email': None, 'name': None,
                                       'phone': None})
    obj.setdefault('disputed', False)
    if self.status == 'failed':
        obj['outcome'] = {
            'network_status': 'declined_by_network', 'reason': getattr(
                self, '_decline_code', 'generic_decline'),
            'risk_level': 'normal', 'seller_message': 'The bank did not return any further '
            'details with this decline.', 'type': 'issuer_declined'}
    return obj


Charge._export = _charge_export


# --------------------------------------------------------------------------------------------
# PaymentIntent: accept a few more create/confirm/cancel parameters, export Stripe's shape.
# --------------------------------------------------------------------------------------------

_PI_EXTRA = ('description', 'setup_future_usage', 'confirmation_method', 'receipt_email',
             'statement_descriptor', 'statement_descriptor_suffix')
_orig_pi_init = PaymentIntent.__init__


def _pi_init(self, **kwargs):
    extra = {k: kwargs.pop(k, None) for k in _PI_EXTRA}
    types = kwargs.get('payment_method_types')
    try:
        assert extra['setup_future_usage'] in (None, 'on_session', 'off_session')
        assert extra['confirmation_method'] in (None, 'automatic', 'manual')
        assert all(v is None or type(v) is str for v in extra.values())
        assert types is None or (type(types) is list and types and
                                 all(type(t) is str for t in types))
    except AssertionError:
        raise UserError(400, 'Bad request')
    _orig_pi_init(self, **kwargs)
    for k, v in extra.items():
        setattr(self, k, v)
    self.confirmation_method = extra['confirmation_method'] or 'automatic'
    self.payment_method_types = types or ['card']
    self.canceled_at = None
    self.cancellation_reason = None


PaymentIntent.__init__ = _pi_init


def _is_expanded(expand, field):
    return any(e == field or e.startswith(field + '.') for e in (expand or ()))


_orig_pi_export = PaymentIntent._export


def _pi_export(self, expand=None):
    obj = _orig_pi_export(self, expand=expand)
    status = obj.get('status')
    obj['amount_capturable'] = self.amount if status == 'requires_capture' else 0
    obj['amount_received'] = self.amount if status == 'succeeded' else 0
    obj['confirmation_method'] = getattr(self, 'confirmation_method', None) or 'automatic'
    obj['payment_method_types'] = getattr(self, 'payment_method_types', None) or ['card']
    for k in _PI_EXTRA + ('canceled_at', 'cancellation_reason'):
        obj.setdefault(k, None)
    obj.pop('charges', None)  # removed from the API in 2022-11-15
    if not _is_expanded(expand, 'latest_charge'):
        obj['latest_charge'] = self.latest_charge.id if self.latest_charge else None
    lpe = obj.get('last_payment_error')
    if lpe:
        lpe = dict(lpe)
        if lpe.get('code') == 'payment_intent_authentication_failure':
            lpe['type'] = 'invalid_request_error'
        else:
            lpe['type'] = 'card_error'
            lpe['decline_code'] = getattr(self.latest_charge, '_decline_code', None)
            lpe['doc_url'] = _doc_url(lpe.get('code') or 'card_declined')
            pm = _lookup_pm(self.latest_charge.payment_method) if self.latest_charge else None
            if isinstance(pm, PaymentMethod):
                lpe['payment_method'] = pm._export()
        obj['last_payment_error'] = lpe
    return obj


PaymentIntent._export = _pi_export

_orig_pi_confirm = PaymentIntent._api_confirm.__func__


def _pi_confirm(cls, id, payment_method=None, off_session=None, return_url=None,
                **kwargs):
    # localstripe refuses `payment_method` (500) and `off_session` (400) on confirm; Stripe
    # accepts both, e.g. to retry a declined PaymentIntent with another card.
    off_session = try_convert_to_bool(off_session)
    if off_session is not None and type(off_session) is not bool:
        raise UserError(400, 'Bad request')
    if payment_method is not None:
        if type(payment_method) is not str:
            raise UserError(400, 'Bad request')
        obj = cls._api_retrieve(id)
        pm = PaymentMethod._api_retrieve(payment_method)  # 404 if unknown
        if obj.status not in ('requires_payment_method', 'requires_confirmation'):
            raise UserError(400, 'Bad request', {'code': 'payment_intent_unexpected_state'})
        obj.payment_method = pm.id
        obj.latest_charge = None
    return _orig_pi_confirm(cls, id, **kwargs)


PaymentIntent._api_confirm = classmethod(_pi_confirm)

_orig_pi_cancel = PaymentIntent._api_cancel.__func__


def _pi_cancel(cls, id, cancellation_reason=None, **kwargs):
    obj = _orig_pi_cancel(cls, id, **kwargs)
    obj.canceled_at = int(time.time())
    obj.cancellation_reason = cancellation_reason
    return obj


PaymentIntent._api_cancel = classmethod(_pi_cancel)

_orig_pi_list = PaymentIntent._api_list_all.__func__


_RANGE = {'gt': int.__gt__, 'gte': int.__ge__, 'lt': int.__lt__, 'lte': int.__le__}


def _pi_list(cls, url, customer=None, created=None, **kwargs):
    # localstripe's list takes no filters; Stripe's takes customer and created (a timestamp or
    # created[gt|gte|lt|lte]).
    if created is not None and not isinstance(created, dict):
        created = {'eq': created}
    try:
        bounds = [(_RANGE.get(op, int.__eq__), int(v)) for op, v in (created or {}).items()]
        assert all(op in _RANGE or op == 'eq' for op in (created or {}))
    except (ValueError, TypeError, AssertionError):
        raise UserError(400, 'Invalid created filter')
    li = _orig_pi_list(cls, url, **kwargs)
    if customer is not None:
        li._list = [pi for pi in li._list if pi.customer == customer]
    li._list = [pi for pi in li._list if all(test(pi.created, v) for test, v in bounds)]
    li._list.sort(key=lambda pi: pi.created, reverse=True)
    return li


PaymentIntent._api_list_all = classmethod(_pi_list)

# --------------------------------------------------------------------------------------------
# Refund: accept `reason` as Stripe does, and emit `charge.refunded` with the refunded charge.
# --------------------------------------------------------------------------------------------

_REFUND_REASONS = ('duplicate', 'fraudulent', 'requested_by_customer')
_orig_refund_init = Refund.__init__


def _refund_init(self, reason=None, **kwargs):
    if reason is not None and reason not in _REFUND_REASONS:
        raise UserError(400, 'Invalid reason: must be one of ' + ', '.join(_REFUND_REASONS))
    _orig_refund_init(self, **kwargs)
    self.reason = reason
    schedule_webhook(Event('charge.refunded', Charge._api_retrieve(self.charge)))


Refund.__init__ = _refund_init

# localstripe.server builds its routes from extra_apis when it is imported (below, after the
# patches), so point those entries at the patched methods.
_REBIND = {
    ('POST', '/v1/payment_intents/{id}/confirm'): PaymentIntent._api_confirm,
    ('POST', '/v1/payment_intents/{id}/cancel'): PaymentIntent._api_cancel,
}
for _i, (_method, _url, _func) in enumerate(ls.extra_apis):
    if (_method, _url) in _REBIND:
        ls.extra_apis[_i] = (_method, _url, _REBIND[_method, _url])


# --------------------------------------------------------------------------------------------
# Event: pending_webhooks, request, api_version.
# --------------------------------------------------------------------------------------------

_orig_event_init = Event.__init__


def _event_init(self, type, data):
    _orig_event_init(self, type, data)
    req = _current_request.get()
    self._request = dict(req) if req else {'id': None, 'idempotency_key': None}


Event.__init__ = _event_init
_orig_event_export = Event._export


def _event_export(self, expand=None):
    obj = _orig_event_export(self, expand=expand)
    obj['pending_webhooks'] = 0
    obj['request'] = getattr(self, '_request', None) or {'id': None, 'idempotency_key': None}
    if CONFIG['api_version']:
        obj['api_version'] = CONFIG['api_version']
    return obj


Event._export = _event_export

# Only now: importing localstripe.server builds its aiohttp app and routes from the patched
# resources.
from localstripe import server as ls_server  # noqa: E402

ls_server.register_webhook = _register_webhook  # what POST /_config/webhooks/{id} calls


# --------------------------------------------------------------------------------------------
# Checkout Sessions (payment mode).
# --------------------------------------------------------------------------------------------

_ZERO_DECIMAL = {'bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf', 'ugx',
                 'vnd', 'vuv', 'xaf', 'xof', 'xpf'}
_SESSION_PARAMS = {
    'mode', 'line_items', 'customer', 'customer_email', 'success_url', 'cancel_url',
    'metadata', 'payment_intent_data', 'client_reference_id', 'payment_method_types',
    'expires_at', 'locale', 'customer_creation', 'billing_address_collection',
    'allow_promotion_codes', 'submit_type', 'ui_mode', 'currency'}


def _param_error(param, message):
    return UserError(400, message, {'param': param})


def _format_amount(amount, currency):
    if currency in _ZERO_DECIMAL:
        return '%d %s' % (amount, currency.upper())
    return '%d.%02d %s' % (amount // 100, amount % 100, currency.upper())


class CheckoutSession(StripeObject):
    object = 'checkout.session'
    _id_prefix = 'cs_test_'

    def __init__(self, **data):
        unknown = set(data) - _SESSION_PARAMS
        if unknown:
            p = sorted(unknown)[0]
            raise _param_error(p, 'Received unknown parameter: %s' % p)
        mode = data.get('mode')
        if mode != 'payment':
            raise _param_error('mode', "Only mode 'payment' is supported by this fake "
                               '(got %r)' % (mode,))
        items = data.get('line_items')
        if type(items) is not list or not items:
            raise _param_error('line_items', 'line_items is required in payment mode')
        line_items, currency, total = [], None, 0
        for i, item in enumerate(items):
            where = 'line_items[%d]' % i
            if type(item) is not dict:
                raise _param_error(where, 'Invalid line item')
            if 'price' in item:
                raise _param_error(where + '[price]', 'This fake supports price_data only')
            pd = item.get('price_data')
            qty = try_convert_to_int(item.get('quantity', 1))
            if type(pd) is not dict:
                raise _param_error(where + '[price_data]', 'Missing required param')
            unit_amount = try_convert_to_int(pd.get('unit_amount'))
            cur = pd.get('currency')
            name = (pd.get('product_data') or {}).get('name') if type(
                pd.get('product_data')) is dict else None
            if type(unit_amount) is not int or unit_amount < 0:
                raise _param_error(where + '[price_data][unit_amount]', 'Invalid integer')
            if type(cur) is not str or len(cur) != 3:
                raise _param_error(where + '[price_data][currency]', 'Invalid currency')
            if type(name) is not str or not name:
                raise _param_error(where + '[price_data][product_data][name]',
                                   'Missing required param')
            if type(qty) is not int or qty < 1:
                raise _param_error(where + '[quantity]', 'Invalid integer')
            cur = cur.lower()
            if currency is not None and cur != currency:
                raise _param_error(where + '[price_data][currency]',
                                   'All line items must have the same currency')
            currency = cur
            total += unit_amount * qty
            line_items.append({'name': name, 'unit_amount': unit_amount, 'quantity': qty,
                               'currency': cur, 'amount_total': unit_amount * qty})
        customer = data.get('customer')
        if customer is not None:
            if type(customer) is not str or not customer.startswith('cus_'):
                raise _param_error('customer', 'Invalid customer')
            Customer._api_retrieve(customer)  # 404 if unknown
        metadata = data.get('metadata') or {}
        pid = data.get('payment_intent_data') or {}
        if type(metadata) is not dict or type(pid) is not dict:
            raise UserError(400, 'Bad request')
        unknown = set(pid) - {'setup_future_usage', 'metadata', 'description',
                              'capture_method', 'receipt_email', 'statement_descriptor',
                              'statement_descriptor_suffix'}
        if unknown:
            p = 'payment_intent_data[%s]' % sorted(unknown)[0]
            raise _param_error(p, 'Received unknown parameter: %s' % p)
        if pid.get('setup_future_usage') not in (None, 'on_session', 'off_session'):
            raise _param_error('payment_intent_data[setup_future_usage]', 'Invalid value')
        if type(pid.get('metadata', {})) is not dict:
            raise _param_error('payment_intent_data[metadata]', 'Invalid hash')
        types = data.get('payment_method_types') or ['card']
        if types != ['card']:
            raise _param_error('payment_method_types', "Only ['card'] is supported")
        expires_at = try_convert_to_int(data.get('expires_at'))

        # All exceptions must be raised before this point.
        super().__init__(id='cs_test_' + random_id(58))

        self._line_items = line_items
        self._payment_intent_data = pid
        self.after_expiration = None
        self.allow_promotion_codes = try_convert_to_bool(data.get('allow_promotion_codes'))
        self.amount_subtotal = total
        self.amount_total = total
        self.automatic_tax = {'enabled': False, 'liability': None, 'provider': None,
                              'status': None}
        self.billing_address_collection = data.get('billing_address_collection')
        self.cancel_url = data.get('cancel_url')
        self.client_reference_id = data.get('client_reference_id')
        self.client_secret = None
        self.consent = None
        self.consent_collection = None
        self.currency = currency
        self.custom_fields = []
        self.custom_text = {'after_submit': None, 'shipping_address': None, 'submit': None,
                            'terms_of_service_acceptance': None}
        self.customer = customer
        self.customer_creation = None if customer else (
            data.get('customer_creation') or 'if_required')
        self.customer_details = None
        self.customer_email = data.get('customer_email')
        self.expires_at = expires_at if type(expires_at) is int else self.created + 86400
        self.invoice = None
        self.locale = data.get('locale')
        self.metadata = metadata
        self.mode = mode
        self.payment_intent = None
        self.payment_link = None
        self.payment_method_collection = 'if_required'
        self.payment_method_types = types
        self.payment_status = 'unpaid'
        self.phone_number_collection = {'enabled': False}
        self.recovered_from = None
        self.setup_intent = None
        self.shipping_address_collection = None
        self.shipping_cost = None
        self.shipping_options = []
        self.status = 'open'
        self.submit_type = data.get('submit_type')
        self.subscription = None
        self.success_url = data.get('success_url')
        self.total_details = {'amount_discount': 0, 'amount_shipping': 0, 'amount_tax': 0}
        self.ui_mode = 'hosted'

    @property
    def url(self):
        # Stripe only shows the url while the session is open.
        return BASE_URL + '/_checkout/' + self.id if self.status == 'open' else None

    @classmethod
    def _api_update(cls, id, metadata=None, **data):
        if data:
            raise UserError(400, 'Unexpected ' + ', '.join(data.keys()))
        obj = cls._api_retrieve(id)
        obj._update(metadata=metadata)
        return obj

    @classmethod
    def _api_delete(cls, id):
        raise UserError(405, 'Method Not Allowed')

    @classmethod
    def _api_list_all(cls, url, customer=None, payment_intent=None, status=None,
                      limit=None, starting_after=None, **kwargs):
        if kwargs:
            raise UserError(400, 'Unexpected ' + ', '.join(kwargs.keys()))
        li = super()._api_list_all(url, limit=limit, starting_after=starting_after)
        li._list = [s for s in li._list
                    if (customer is None or s.customer == customer) and
                    (payment_intent is None or s.payment_intent == payment_intent) and
                    (status is None or s.status == status)]
        li._list.sort(key=lambda s: s.created, reverse=True)
        return li

    @classmethod
    def _api_expire(cls, id, **kwargs):
        if kwargs:
            raise UserError(400, 'Unexpected ' + ', '.join(kwargs.keys()))
        obj = cls._api_retrieve(id)
        if obj.status != 'open':
            raise UserError(400, 'Only Checkout Sessions with a status of open can be '
                            'expired.', {'code': 'checkout_session_unexpected_state'})
        obj.status = 'expired'
        schedule_webhook(Event('checkout.session.expired', obj))
        return obj

    def _complete(self, payment_method='pm_card_visa', save_payment_method=None):
        """Pays the session as the hosted page would: a PaymentIntent for amount_total on the
        session's customer, created and confirmed (so declines answer 402 card_error), the
        payment method attached to the customer when saving, then checkout.session.completed.
        """
        save = try_convert_to_bool(save_payment_method)
        if save is None or save == '':
            save = bool(self._payment_intent_data.get('setup_future_usage'))
        if type(save) is not bool:
            raise _param_error('save_payment_method', 'Invalid boolean')
        if type(payment_method) is not str or not payment_method:
            raise _param_error('payment_method', 'Invalid payment method')
        if self.status != 'open':
            raise UserError(400, 'This Checkout Session is %s' % self.status,
                            {'code': 'checkout_session_unexpected_state'})
        pm = PaymentMethod._api_retrieve(payment_method)  # pm_card_* test ids create one
        if not isinstance(pm, PaymentMethod):
            raise _param_error('payment_method', 'Expected a PaymentMethod (pm_...)')
        customer = self.customer
        if customer is None and save:
            customer = Customer(email=self.customer_email).id
        if save and pm._attaching_is_declined():
            raise UserError(402, 'Your card was declined.', {'code': 'card_declined'})
        if save and pm.customer not in (None, customer):
            raise _param_error('payment_method', 'The payment method belongs to another '
                               'customer')

        pid = self._payment_intent_data
        pi_params = {'amount': self.amount_total, 'currency': self.currency,
                     'payment_method': pm.id, 'metadata': dict(pid.get('metadata') or {}),
                     'confirm': True}
        if customer:
            pi_params['customer'] = customer
        for k in ('setup_future_usage', 'description', 'capture_method', 'receipt_email',
                  'statement_descriptor', 'statement_descriptor_suffix'):
            if pid.get(k) is not None:
                pi_params[k] = pid[k]
        pi = PaymentIntent._api_create(**pi_params)  # raises 402 on a decline
        if pi.status not in ('succeeded', 'requires_capture', 'processing'):
            raise UserError(402, 'This payment requires authentication, which this fake '
                            'Checkout page does not simulate.',
                            {'code': 'authentication_required'})

        if save:
            pm.customer = customer
        self.customer = customer
        self.payment_intent = pi.id
        self.status = 'complete'
        self.payment_status = 'paid' if pi.status != 'processing' else 'unpaid'
        email = self.customer_email
        name = None
        if customer:
            c = Customer._api_retrieve(customer)
            email, name = email or c.email, c.name
        self.customer_details = {'address': None, 'email': email, 'name': name,
                                 'phone': None, 'tax_exempt': 'none', 'tax_ids': []}
        store.dump_to_disk()
        schedule_webhook(Event('checkout.session.completed', self))
        return self


def _session_for(request):
    return CheckoutSession._api_retrieve(request.match_info['id'])


async def test_complete_session(request):
    data = await ls_server.get_post_data(request) or {}
    data.update(ls_server.unflatten_data(request.query) or {})
    expand = data.pop('expand', None)
    unknown = set(data) - {'payment_method', 'save_payment_method'}
    if unknown:
        raise UserError(400, 'Unexpected ' + ', '.join(sorted(unknown)))
    session = _session_for(request)
    session._complete(data.get('payment_method', 'pm_card_visa'),
                      data.get('save_payment_method'))
    return ls_server.json_response(session._export(expand=expand))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Checkout</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}
td{{padding:.2rem .8rem}} .total{{font-size:1.6rem}} .error{{color:#b00}}</style></head>
<body><h1>Checkout</h1><p class="mode">Test mode &mdash; fake Stripe</p>
<table>{rows}</table>
<p class="total" id="amount">{amount}</p>{body}</body></html>"""


def _page(session, body, status=200):
    rows = ''.join('<tr><td>%s</td><td>&times; %d</td><td>%s</td></tr>' % (
        html.escape(li['name']), li['quantity'],
        html.escape(_format_amount(li['amount_total'], li['currency'])))
        for li in session._line_items)
    text = _PAGE.format(rows=rows, amount=html.escape(
        _format_amount(session.amount_total, session.currency)), body=body)
    return web.Response(text=text, content_type='text/html', status=status)


def _pay_form(session, error=None):
    err = '<p class="error" id="error">%s</p>' % html.escape(error) if error else ''
    cancel = ('<p><a id="cancel" href="%s">Cancel</a></p>' % html.escape(session.cancel_url)
              if session.cancel_url else '')
    return err + """<form method="post" action="/_checkout/{id}/pay">
<label>Card <select name="payment_method">
<option value="pm_card_visa">Visa 4242 (succeeds)</option>
<option value="pm_card_chargeCustomerFail">Visa 0341 (declined)</option>
</select></label>
<label><input type="checkbox" name="save_payment_method" value="true"{checked}>
Save card</label>
<button type="submit" id="pay">Pay</button></form>{cancel}""".format(
        id=html.escape(session.id), cancel=cancel,
        checked=' checked' if session._payment_intent_data.get('setup_future_usage') else '')


async def checkout_page(request):
    try:
        session = _session_for(request)
    except UserError:
        return web.Response(text='<!DOCTYPE html><title>Checkout</title><p>No such Checkout '
                            'Session.</p>', content_type='text/html', status=404)
    if session.status != 'open':
        return _page(session, '<p id="status">This Checkout Session is %s.</p>'
                     % html.escape(session.status))
    return _page(session, _pay_form(session))


async def checkout_pay(request):
    try:
        session = _session_for(request)
    except UserError:
        raise web.HTTPNotFound()
    form = await request.post()
    try:
        session._complete(form.get('payment_method') or 'pm_card_visa',
                          'true' if form.get('save_payment_method') else 'false')
    except UserError as e:
        _rewrite_error(e, request)
        return _page(session, _pay_form(session, e.body['error'].get('message')),
                     status=e.code)
    if session.success_url:
        raise web.HTTPSeeOther(
            session.success_url.replace('{CHECKOUT_SESSION_ID}', session.id))
    return _page(session, '<p id="status">Payment complete.</p>')


# --------------------------------------------------------------------------------------------
# Middlewares.
# --------------------------------------------------------------------------------------------

def _rewrite_error(e, request):
    err = e.body.setdefault('error', {})
    if e.code == 402:
        # Every localstripe 402 is a card decline (charge, attach, source, setup intent).
        charge = store.get('charge:' + err['charge']) if err.get('charge') else None
        pm = _lookup_pm(charge.payment_method) if charge else _last_declined_pm.get()
        code, decline_code, message = _decline_for(pm)
        if charge is not None:
            code = charge.failure_code or code
            message = charge.failure_message or message
            decline_code = getattr(charge, '_decline_code', decline_code)
        if err.get('code') == 'authentication_required':
            code, decline_code = 'authentication_required', 'authentication_required'
            message = err.get('message') or message
        err.update(type='card_error', code=code, message=message, doc_url=_doc_url(code))
        err['decline_code'] = decline_code
        if decline_code is None:
            del err['decline_code']
        if charge is not None and charge.payment_intent:
            pi = store.get('payment_intent:' + charge.payment_intent)
            if pi is not None:
                err['payment_intent'] = pi._export()
        if isinstance(pm, PaymentMethod):
            err['payment_method'] = pm._export()
    elif e.code == 404:
        err.setdefault('code', 'resource_missing')
    elif e.code == 401:
        err.setdefault('message', 'Invalid API Key provided.')


@web.middleware
async def stripe_errors_middleware(request, handler):
    token = _last_declined_pm.set(None)
    try:
        return await handler(request)
    except UserError as e:
        _rewrite_error(e, request)
        raise
    finally:
        _last_declined_pm.reset(token)


_NO_AUTH_PREFIXES = ('/_test/', '/_checkout/')


def _wrap_auth(auth_middleware):
    @web.middleware
    async def auth(request, handler):
        if request.path.startswith(_NO_AUTH_PREFIXES):
            return await handler(request)
        return await auth_middleware(request, handler)
    return auth


IDEMPOTENCY_TTL = 24 * 3600
_idempotency = {}  # (api key, idempotency key) -> entry dict


def _api_key(request):
    try:
        return ls_server.get_api_key(request) or ''
    except Exception:
        return ''


def _params_fingerprint(request, body):
    ctype = request.headers.get('Content-Type', '')
    if 'json' in ctype:
        try:
            return json.dumps(json.loads(body or b'null'), sort_keys=True)
        except ValueError:
            pass
    pairs = urllib.parse.parse_qsl(body.decode('utf-8', 'replace'), keep_blank_values=True)
    return json.dumps(sorted(pairs))


def _json_error(status, error, headers=None):
    return web.json_response({'error': error}, status=status, headers=headers)


def _should_store(status):
    # Stripe saves the result once the endpoint started executing, errors included; not when
    # parameters failed validation (400), authentication failed, or the key was in use.
    return status not in (400, 401, 409, 429)


@web.middleware
async def request_middleware(request, handler):
    """Request-Id on every answer, Events tagged with their request, Idempotency-Key."""
    req_id = 'req_' + random_id(14)
    key = request.headers.get('Idempotency-Key') if request.method == 'POST' else None
    version = request.headers.get('Stripe-Version')
    if version and not CONFIG['api_version_fixed']:
        CONFIG['api_version'] = version
    token = _current_request.set({'id': req_id, 'idempotency_key': key})
    try:
        if request.method == 'DELETE' and request.path == '/_config/data':
            _idempotency.clear()
        if request.method == 'DELETE' and request.path == '/_config/idempotency':
            # Test-only: forget saved answers, as Stripe does with keys older than 24 h.
            forgotten = len(_idempotency)
            _idempotency.clear()
            return web.json_response({'forgotten': forgotten})
        try:
            if key and request.path.startswith('/v1/'):
                resp = await _idempotent(request, handler, key)
            else:
                resp = await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            if not request.path.startswith('/v1/'):
                raise
            # Stripe answers JSON for endpoints it does not have; so does this fake for the
            # endpoints localstripe lacks.
            resp = _json_error(404, {
                'type': 'invalid_request_error',
                'message': 'Unrecognized request URL (%s: %s). This fake Stripe (localstripe '
                '%s, see infra/stripe/README.md) does not implement it.'
                % (request.method, request.path, localstripe.__version__)})
    finally:
        _current_request.reset(token)
    resp.headers['Request-Id'] = req_id
    if key:
        resp.headers['Idempotency-Key'] = key
    return resp


async def _idempotent(request, handler, key):
    now = time.time()
    for k in [k for k, v in _idempotency.items() if v['at'] < now - IDEMPOTENCY_TTL]:
        del _idempotency[k]
    body = await request.read()
    fp = _params_fingerprint(request, body)
    scope = (_api_key(request), key)
    entry = _idempotency.get(scope)
    if entry is not None:
        if entry['response'] is None:
            return _json_error(409, {
                'type': 'invalid_request_error', 'code': 'idempotency_key_in_use',
                'message': 'There is currently another in-progress request using this '
                'Idempotent Key (that probably means you submitted twice, and the other '
                'request is still going through): %s. Please try again later.' % key})
        if entry['path'] != request.path:
            return _json_error(400, {
                'type': 'idempotency_error',
                'message': "Keys for idempotent requests can only be used for the same "
                "endpoint they were first used for ('POST %s' vs 'POST %s'). Try using a "
                "key other than '%s' if you meant to execute a different request."
                % (request.path, entry['path'], key)})
        if entry['fingerprint'] != fp:
            return _json_error(400, {
                'type': 'idempotency_error',
                'message': 'Keys for idempotent requests can only be used with the same '
                "parameters they were first used with. Try using a key other than '%s' if "
                'you meant to execute a different request.' % key})
        status, rbody, ctype, charset = entry['response']
        return web.Response(status=status, body=rbody, content_type=ctype, charset=charset,
                            headers={'Idempotent-Replayed': 'true'})
    entry = {'at': now, 'path': request.path, 'fingerprint': fp, 'response': None}
    _idempotency[scope] = entry
    try:
        resp = await handler(request)
    except BaseException:
        _idempotency.pop(scope, None)
        raise
    rbody = getattr(resp, 'body', None)
    if _should_store(resp.status) and isinstance(rbody, (bytes, bytearray)):
        entry['response'] = (resp.status, bytes(rbody),
                             resp.content_type or 'application/json', resp.charset)
    else:
        _idempotency.pop(scope, None)
    return resp


# --------------------------------------------------------------------------------------------
# App and main.
# --------------------------------------------------------------------------------------------

def build_app():
    app = ls_server.app
    mws = app.middlewares
    i_auth = mws.index(ls_server.auth_middleware)
    mws[i_auth] = _wrap_auth(ls_server.auth_middleware)
    i_err = mws.index(ls_server.error_middleware)
    mws.insert(i_err + 1, stripe_errors_middleware)  # inside: sees UserError before it
    mws.insert(0, request_middleware)  # outermost: sees the final response

    url = '/v1/checkout/sessions'
    app.router.add_post(url + '/{id}/expire',
                        ls_server.api_extra(CheckoutSession._api_expire, url))
    app.router.add_post(url, ls_server.api_create(CheckoutSession, url))
    app.router.add_get(url, ls_server.api_list_all(CheckoutSession, url))
    app.router.add_get(url + '/{id}', ls_server.api_retrieve(CheckoutSession, url))
    app.router.add_post(url + '/{id}', ls_server.api_update(CheckoutSession, url))
    app.router.add_post('/_test/checkout/sessions/{id}/complete', test_complete_session)
    app.router.add_get('/_checkout/{id}', checkout_page)
    app.router.add_post('/_checkout/{id}/pay', checkout_pay)
    return app


async def serve(args):
    global BASE_URL
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', args.port))
    port = sock.getsockname()[1]
    BASE_URL = 'http://127.0.0.1:%d' % port

    app = build_app()
    access_log = logging.getLogger('aiohttp.access') if args.verbose else None
    runner = web.AppRunner(app, access_log=access_log, shutdown_timeout=0.5)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    print('LISTENING %d' % port, flush=True)
    log.info('fake Stripe (localstripe %s) on %s, state %s', localstripe.__version__,
             BASE_URL, CONFIG['state_dir'] or 'in memory only')
    await stop.wait()
    log.info('stopping')
    await runner.cleanup()
    store.dump_to_disk()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--port', type=int, default=0,
                        help='port on 127.0.0.1; 0 (default) picks a free one')
    parser.add_argument('--state-dir', help='keep the fake\'s data here across restarts '
                        '(created if missing); without it nothing is written to disk')
    parser.add_argument('--fresh', action='store_true',
                        help='ignore data already in --state-dir')
    parser.add_argument('--api-version', help='api_version on Events (default: the '
                        'Stripe-Version header of the latest request, else localstripe\'s)')
    parser.add_argument('-v', '--verbose', action='store_true', help='log every request')
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    if args.state_dir:
        CONFIG['state_dir'] = os.path.abspath(args.state_dir)
        os.makedirs(CONFIG['state_dir'], exist_ok=True)
    CONFIG['api_version'] = args.api_version
    CONFIG['api_version_fixed'] = bool(args.api_version)
    if not args.fresh:
        store.try_load_from_disk()
        _load_webhooks()
    try:
        asyncio.run(serve(args))
    except OSError as e:
        print('launcher: error: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
