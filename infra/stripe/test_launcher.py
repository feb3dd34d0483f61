"""Smoke test of infra/stripe/launcher.py over plain HTTP (urllib), no test framework beyond
unittest:

    infra/.venv/bin/python infra/stripe/test_launcher.py [-v]

It starts the launcher on a free port with a temporary --state-dir, registers a tiny local
webhook receiver, and checks what the Rust side (async-stripe) will rely on.
"""

import hashlib
import hmac
import http.server
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

sys.dont_write_bytecode = True

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'launcher.py')
API_KEY = 'sk_test_fake'
WEBHOOK_SECRET = 'whsec_test_' + uuid.uuid4().hex
# Loopback only, never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


NO_REDIRECT_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                 NoRedirect())


def start_launcher(state_dir, log_path, extra=()):
    log = open(log_path, 'ab')
    proc = subprocess.Popen(
        [sys.executable, LAUNCHER, '--port', '0', '--state-dir', state_dir, *extra],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline().decode() if ready else ''
    if not line.startswith('LISTENING '):
        proc.kill()
        proc.wait()
        with open(log_path) as f:
            raise RuntimeError('launcher did not start (first line %r):\n%s' % (line, f.read()))
    return proc, int(line.split()[1])


def stop_launcher(proc, timeout=10):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def flatten(params, prefix=''):
    """Stripe's form encoding: a[b][0][c]=v."""
    out = []
    items = params.items() if isinstance(params, dict) else enumerate(params)
    for k, v in items:
        key = '%s[%s]' % (prefix, k) if prefix else str(k)
        if isinstance(v, (dict, list)):
            out.extend(flatten(v, key))
        elif isinstance(v, bool):
            out.append((key, 'true' if v else 'false'))
        elif v is not None:
            out.append((key, str(v)))
    return out


class Api:
    def __init__(self, port):
        self.base = 'http://127.0.0.1:%d' % port

    def request(self, method, path, params=None, idempotency_key=None, auth=True,
                opener=OPENER):
        url = self.base + path
        data = None
        if params is not None and method == 'GET':
            url += '?' + urllib.parse.urlencode(flatten(params))
        elif params is not None:
            data = urllib.parse.urlencode(flatten(params)).encode()
        elif method == 'POST':
            data = b''
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header('Content-Type', 'application/x-www-form-urlencoded')
        if auth:
            req.add_header('Authorization', 'Bearer ' + API_KEY)
        if idempotency_key:
            req.add_header('Idempotency-Key', idempotency_key)
        try:
            with opener.open(req, timeout=15) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            e.close()
            return e.code, e.headers, body

    def call(self, method, path, params=None, **kw):
        status, headers, body = self.request(method, path, params, **kw)
        return status, headers, json.loads(body) if body else None

    def ok(self, method, path, params=None, **kw):
        status, _, obj = self.call(method, path, params, **kw)
        if status != 200:
            raise AssertionError('%s %s -> %d %s' % (method, path, status, obj))
        return obj


class WebhookReceiver:
    """A local HTTP server that records every POST (headers, raw body)."""

    def __init__(self):
        self.received = queue.Queue()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
                received.put((dict(self.headers), body))
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/stripe/webhook' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.seen = []

    def wait_for(self, predicate, timeout=15):
        for item in self.seen:
            if predicate(item):
                return item
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                item = self.received.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            self.seen.append(item)
            if predicate(item):
                return item
        raise AssertionError('no matching webhook within %ss (got %d others)'
                             % (timeout, len(self.seen)))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def verify_signature(header, body, secret, tolerance=300):
    parts = dict(p.split('=', 1) for p in header.split(','))
    t = int(parts['t'])
    expected = hmac.new(secret.encode(), b'%d.' % t + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts['v1']) and abs(time.time() - t) <= tolerance


def new_key():
    return 'test-' + uuid.uuid4().hex


class LauncherTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix='fake-stripe-test-')
        cls.state_dir = os.path.join(cls.tmp.name, 'state')
        cls.log_path = os.path.join(cls.tmp.name, 'launcher.log')
        cls.proc, cls.port = start_launcher(cls.state_dir, cls.log_path)
        cls.api = Api(cls.port)
        cls.hooks = WebhookReceiver()
        status, _, _ = cls.api.request('POST', '/_config/webhooks/smoke', {
            'url': cls.hooks.url, 'secret': WEBHOOK_SECRET}, auth=False)
        assert status == 200, status

    @classmethod
    def tearDownClass(cls):
        cls.hooks.stop()
        rc = stop_launcher(cls.proc)
        if rc != 0:
            with open(cls.log_path) as f:
                sys.stderr.write(f.read())
        cls.tmp.cleanup()
        assert rc == 0, 'launcher exited with %r on SIGTERM' % rc

    def customer(self):
        return self.ok('POST', '/v1/customers', {'email': 'smoke@example.test',
                                                 'name': 'Smoke Test'})['id']

    def ok(self, *args, **kw):
        return self.api.ok(*args, **kw)

    def call(self, *args, **kw):
        return self.api.call(*args, **kw)

    def assert_payment_intent_shape(self, pi):
        for field in ('amount', 'amount_capturable', 'amount_received', 'created'):
            self.assertIs(type(pi[field]), int, field)
        self.assertEqual(pi['confirmation_method'], 'automatic')
        self.assertEqual(pi['payment_method_types'], ['card'])
        self.assertIsInstance(pi['latest_charge'], (str, type(None)))
        self.assertIsInstance(pi['metadata'], dict)
        self.assertNotIn('charges', pi)

    # ---------------------------------------------------------------------------------------

    def test_off_session_payment_is_idempotent_and_has_stripe_fields(self):
        cus = self.customer()
        pm = self.ok('POST', '/v1/payment_methods/pm_card_visa/attach', {'customer': cus})
        self.assertTrue(pm['id'].startswith('pm_'))
        self.assertEqual(pm['customer'], cus)
        params = {'amount': 1234, 'currency': 'eur', 'customer': cus,
                  'payment_method': pm['id'], 'confirm': True, 'off_session': True,
                  'metadata': {'invoice': 'inv_1'}}
        key = new_key()
        s1, h1, pi1 = self.call('POST', '/v1/payment_intents', params, idempotency_key=key)
        s2, h2, pi2 = self.call('POST', '/v1/payment_intents', params, idempotency_key=key)
        self.assertEqual((s1, s2), (200, 200), (pi1, pi2))
        self.assertEqual(pi1['id'], pi2['id'])
        self.assertEqual(pi1, pi2)
        self.assertIsNone(h1.get('Idempotent-Replayed'))
        self.assertEqual(h2.get('Idempotent-Replayed'), 'true')
        self.assertTrue(h1.get('Request-Id', '').startswith('req_'))

        self.assertEqual(pi1['status'], 'succeeded')
        self.assert_payment_intent_shape(pi1)
        self.assertEqual(pi1['amount_capturable'], 0)
        self.assertEqual(pi1['amount_received'], 1234)
        self.assertTrue(pi1['latest_charge'].startswith('ch_'))
        self.assertEqual(pi1['metadata'], {'invoice': 'inv_1'})

        # Only one PaymentIntent was created for the two calls.
        listed = self.ok('GET', '/v1/payment_intents', {'limit': 100})['data']
        self.assertEqual(len([p for p in listed if p['metadata'] == {'invoice': 'inv_1'}
                              and p['customer'] == cus]), 1)

        # Unexpanded on retrieve too; expanded on request.
        got = self.ok('GET', '/v1/payment_intents/' + pi1['id'])
        self.assertEqual(got['latest_charge'], pi1['latest_charge'])
        expanded = self.ok('GET', '/v1/payment_intents/' + pi1['id'],
                           {'expand': ['latest_charge']})
        charge = expanded['latest_charge']
        self.assertEqual(charge['object'], 'charge')
        self.assertEqual(charge['id'], pi1['latest_charge'])
        self.assertEqual(charge['amount_captured'], 1234)
        self.assertIs(charge['disputed'], False)
        self.assertIsInstance(charge['billing_details'], dict)

        # A not-yet-confirmed PaymentIntent has no charge and receives nothing.
        pending = self.ok('POST', '/v1/payment_intents', {'amount': 500, 'currency': 'eur',
                                                          'customer': cus})
        self.assert_payment_intent_shape(pending)
        self.assertIsNone(pending['latest_charge'])
        self.assertEqual(pending['amount_received'], 0)

    def test_same_idempotency_key_with_other_parameters_is_an_idempotency_error(self):
        cus = self.customer()
        key = new_key()
        self.ok('POST', '/v1/customers', {'email': 'a@example.test'}, idempotency_key=key)
        status, _, err = self.call('POST', '/v1/customers', {'email': 'b@example.test'},
                                   idempotency_key=key)
        self.assertEqual(status, 400)
        self.assertEqual(err['error']['type'], 'idempotency_error')
        # ... and on another endpoint.
        status, _, err = self.call('POST', '/v1/payment_intents', {
            'amount': 100, 'currency': 'eur', 'customer': cus}, idempotency_key=key)
        self.assertEqual(status, 400)
        self.assertEqual(err['error']['type'], 'idempotency_error')
        # Requests without a key are never deduplicated.
        a = self.ok('POST', '/v1/customers', {'email': 'c@example.test'})
        b = self.ok('POST', '/v1/customers', {'email': 'c@example.test'})
        self.assertNotEqual(a['id'], b['id'])

    def check_declined(self, cus, pm_id, card_last4):
        params = {'amount': 4200, 'currency': 'eur', 'customer': cus,
                  'payment_method': pm_id, 'confirm': True, 'off_session': True}
        key = new_key()
        status, _, body = self.call('POST', '/v1/payment_intents', params,
                                    idempotency_key=key)
        self.assertEqual(status, 402, body)
        err = body['error']
        self.assertEqual(err['type'], 'card_error')
        self.assertEqual(err['code'], 'card_declined')
        self.assertEqual(err['decline_code'], 'generic_decline')
        self.assertEqual(err['message'], 'Your card was declined.')
        self.assertTrue(err['charge'].startswith('ch_'))
        pi = err['payment_intent']
        self.assertEqual(pi['status'], 'requires_payment_method')
        self.assert_payment_intent_shape(pi)
        self.assertEqual(pi['amount_received'], 0)
        self.assertEqual(pi['last_payment_error']['type'], 'card_error')
        self.assertEqual(pi['last_payment_error']['decline_code'], 'generic_decline')
        self.assertEqual(err['payment_method']['card']['last4'], card_last4)
        # The retrieved PaymentIntent tells the same story.
        got = self.ok('GET', '/v1/payment_intents/' + pi['id'])
        self.assertEqual(got['status'], 'requires_payment_method')
        self.assertEqual(got['last_payment_error']['code'], 'card_declined')
        # A retry with the same key replays the decline instead of charging again.
        status2, h2, body2 = self.call('POST', '/v1/payment_intents', params,
                                       idempotency_key=key)
        self.assertEqual((status2, body2), (402, body))
        self.assertEqual(h2.get('Idempotent-Replayed'), 'true')
        return pi

    def test_declined_card_number_is_a_402_card_error(self):
        cus = self.customer()
        pm = self.ok('POST', '/v1/payment_methods', {'type': 'card', 'card': {
            'number': '4000000000000341', 'exp_month': 12, 'exp_year': 2034, 'cvc': '123'}})
        attached = self.ok('POST', '/v1/payment_methods/%s/attach' % pm['id'],
                           {'customer': cus})  # attaching succeeds, charging fails
        self.assertEqual(attached['customer'], cus)
        pi = self.check_declined(cus, pm['id'], '0341')

        # Retrying with a good card (confirm with payment_method) succeeds.
        good = self.ok('POST', '/v1/payment_methods/pm_card_visa/attach', {'customer': cus})
        retried = self.ok('POST', '/v1/payment_intents/%s/confirm' % pi['id'], {
            'payment_method': good['id'], 'off_session': True})
        self.assertEqual(retried['status'], 'succeeded')
        self.assertEqual(retried['amount_received'], 4200)

    def test_declined_test_payment_method_is_a_402_card_error(self):
        cus = self.customer()
        pm = self.ok('POST', '/v1/payment_methods/pm_card_chargeCustomerFail/attach',
                     {'customer': cus})
        self.check_declined(cus, pm['id'], '0341')

    def test_card_declined_when_attaching_is_a_card_error(self):
        cus = self.customer()
        status, _, body = self.call(
            'POST', '/v1/payment_methods/pm_card_visa_chargeDeclined/attach',
            {'customer': cus})
        self.assertEqual(status, 402, body)
        self.assertEqual(body['error']['type'], 'card_error')
        self.assertEqual(body['error']['decline_code'], 'generic_decline')

    def test_events_have_pending_webhooks(self):
        self.customer()
        events = self.ok('GET', '/v1/events', {'limit': 100})['data']
        self.assertTrue(events)
        for ev in events:
            self.assertIs(type(ev['pending_webhooks']), int, ev['type'])
            self.assertEqual(ev['object'], 'event')
            self.assertIn('request', ev)

    def test_unknown_object_is_resource_missing(self):
        status, _, body = self.call('GET', '/v1/customers/cus_doesnotexist')
        self.assertEqual(status, 404)
        self.assertEqual(body['error']['code'], 'resource_missing')

    def test_checkout_session_completed(self):
        cus = self.customer()
        session = self.ok('POST', '/v1/checkout/sessions', {
            'mode': 'payment',
            'line_items': [{'price_data': {'currency': 'eur', 'unit_amount': 1500,
                                           'product_data': {'name': 'Usage credits'}},
                            'quantity': 3}],
            'customer': cus,
            'success_url': 'https://app.example.test/paid?session={CHECKOUT_SESSION_ID}',
            'cancel_url': 'https://app.example.test/cancelled',
            'metadata': {'order': 'ord_42'},
            'payment_intent_data': {'setup_future_usage': 'off_session',
                                    'metadata': {'order': 'ord_42'}},
        }, idempotency_key=new_key())
        sid = session['id']
        self.assertTrue(sid.startswith('cs_test_'))
        self.assertEqual(session['object'], 'checkout.session')
        self.assertEqual(session['status'], 'open')
        self.assertEqual(session['payment_status'], 'unpaid')
        self.assertEqual(session['amount_total'], 4500)
        self.assertEqual(session['currency'], 'eur')
        self.assertEqual(session['customer'], cus)
        self.assertEqual(session['mode'], 'payment')
        self.assertEqual(session['metadata'], {'order': 'ord_42'})
        self.assertIsNone(session['payment_intent'])
        self.assertEqual(session['url'], '%s/_checkout/%s' % (self.api.base, sid))

        # The hosted page, as a browser would get it (no API key).
        with OPENER.open(session['url'], timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertIn('text/html', r.headers['Content-Type'])
            page = r.read().decode()
        self.assertIn('<title>Checkout</title>', page)
        self.assertIn('45.00 EUR', page)

        got = self.ok('GET', '/v1/checkout/sessions/' + sid)
        self.assertEqual(got, session)

        completed = self.ok('POST', '/_test/checkout/sessions/%s/complete' % sid,
                            {'payment_method': 'pm_card_visa', 'save_payment_method': True},
                            auth=False)
        self.assertEqual(completed['status'], 'complete')

        headers, body = self.hooks.wait_for(
            lambda item: b'checkout.session.completed' in item[1] and sid.encode() in item[1])
        self.assertTrue(verify_signature(headers['Stripe-Signature'], body, WEBHOOK_SECRET),
                        headers['Stripe-Signature'])
        self.assertFalse(verify_signature(headers['Stripe-Signature'], body, 'whsec_wrong'))
        event = json.loads(body)
        self.assertEqual(event['type'], 'checkout.session.completed')
        self.assertEqual(event['object'], 'event')
        self.assertIs(type(event['pending_webhooks']), int)
        obj = event['data']['object']
        self.assertEqual(obj['id'], sid)
        self.assertEqual(obj['status'], 'complete')
        self.assertEqual(obj['payment_status'], 'paid')
        self.assertEqual(obj['metadata'], {'order': 'ord_42'})
        self.assertTrue(obj['payment_intent'].startswith('pi_'))

        session = self.ok('GET', '/v1/checkout/sessions/' + sid)
        self.assertEqual(session['status'], 'complete')
        self.assertEqual(session['payment_status'], 'paid')
        self.assertEqual(session['payment_intent'], obj['payment_intent'])
        self.assertIsNone(session['url'])

        pi = self.ok('GET', '/v1/payment_intents/' + session['payment_intent'])
        self.assertEqual(pi['status'], 'succeeded')
        self.assertEqual(pi['amount'], 4500)
        self.assertEqual(pi['amount_received'], 4500)
        self.assertEqual(pi['customer'], cus)
        self.assertEqual(pi['metadata'], {'order': 'ord_42'})
        self.assertEqual(pi['setup_future_usage'], 'off_session')
        self.assert_payment_intent_shape(pi)

        # The card was saved on the customer, ready for off-session payments.
        pms = self.ok('GET', '/v1/payment_methods', {'customer': cus, 'type': 'card'})['data']
        self.assertEqual([p['id'] for p in pms], [pi['payment_method']])
        later = self.ok('POST', '/v1/payment_intents', {
            'amount': 700, 'currency': 'eur', 'customer': cus,
            'payment_method': pms[0]['id'], 'confirm': True, 'off_session': True})
        self.assertEqual(later['status'], 'succeeded')

        # The payment_intent.succeeded webhook came through the same way.
        headers, body = self.hooks.wait_for(
            lambda item: b'payment_intent.succeeded' in item[1] and
            pi['id'].encode() in item[1])
        self.assertTrue(verify_signature(headers['Stripe-Signature'], body, WEBHOOK_SECRET))
        ev = json.loads(body)
        self.assertIs(type(ev['pending_webhooks']), int)
        self.assertEqual(ev['data']['object']['latest_charge'], pi['latest_charge'])
        self.assert_payment_intent_shape(ev['data']['object'])

        # Completing twice is refused.
        status, _, _ = self.call('POST', '/_test/checkout/sessions/%s/complete' % sid,
                                 auth=False)
        self.assertEqual(status, 400)

    def test_checkout_page_pay_button_redirects_to_success_url(self):
        session = self.ok('POST', '/v1/checkout/sessions', {
            'mode': 'payment', 'success_url': 'https://app.example.test/ok/{CHECKOUT_SESSION_ID}',
            'line_items': [{'price_data': {'currency': 'usd', 'unit_amount': 999,
                                           'product_data': {'name': 'Plan'}},
                            'quantity': 1}]})
        path = urllib.parse.urlparse(session['url']).path
        status, _, body = self.api.request('POST', path + '/pay',
                                           {'payment_method': 'pm_card_chargeCustomerFail'},
                                           auth=False)
        self.assertEqual(status, 402)
        self.assertIn(b'Your card was declined.', body)
        status, headers, _ = self.api.request('POST', path + '/pay',
                                              {'payment_method': 'pm_card_visa'},
                                              auth=False, opener=NO_REDIRECT_OPENER)
        self.assertEqual(status, 303)
        self.assertEqual(headers['Location'], 'https://app.example.test/ok/' + session['id'])
        got = self.ok('GET', '/v1/checkout/sessions/' + session['id'])
        self.assertEqual((got['status'], got['payment_status']), ('complete', 'paid'))

    def test_requires_api_key(self):
        status, _, _ = self.api.request('GET', '/v1/customers', auth=False)
        self.assertEqual(status, 401)


class LifecycleTest(unittest.TestCase):
    def test_state_dir_survives_restart_and_sigterm_exits_cleanly(self):
        global_pickle = os.path.join(tempfile.gettempdir(), 'localstripe.pickle')

        def stat():
            try:
                st = os.stat(global_pickle)
                return st.st_mtime_ns, st.st_size
            except FileNotFoundError:
                return None

        before = stat()
        with tempfile.TemporaryDirectory(prefix='fake-stripe-test-') as tmp:
            state = os.path.join(tmp, 'state')
            log_path = os.path.join(tmp, 'launcher.log')
            proc, port = start_launcher(state, log_path)
            try:
                api = Api(port)
                cus = api.ok('POST', '/v1/customers', {'email': 'keep@example.test'})
                session = api.ok('POST', '/v1/checkout/sessions', {
                    'mode': 'payment', 'customer': cus['id'],
                    'line_items': [{'price_data': {'currency': 'eur', 'unit_amount': 100,
                                                   'product_data': {'name': 'Kept'}},
                                    'quantity': 1}]})
            finally:
                t0 = time.time()
                rc = stop_launcher(proc)
            self.assertEqual(rc, 0)
            self.assertLess(time.time() - t0, 5)
            self.assertEqual(sorted(os.listdir(tmp)), ['launcher.log', 'state'])
            self.assertIn('localstripe.pickle', os.listdir(state))

            proc, port = start_launcher(state, log_path)
            try:
                api = Api(port)
                got = api.ok('GET', '/v1/customers/' + cus['id'])
                self.assertEqual(got['email'], 'keep@example.test')
                got = api.ok('GET', '/v1/checkout/sessions/' + session['id'])
                self.assertEqual(got['url'], '%s/_checkout/%s' % (api.base, session['id']))
                api.ok('POST', '/_test/checkout/sessions/%s/complete' % session['id'],
                       auth=False)
            finally:
                self.assertEqual(stop_launcher(proc), 0)

            proc, port = start_launcher(state, log_path, ['--fresh'])
            try:
                status, _, _ = Api(port).call('GET', '/v1/customers/' + cus['id'])
                self.assertEqual(status, 404)
            finally:
                proc.send_signal(signal.SIGINT)
                self.assertEqual(proc.wait(10), 0)
                proc.stdout.close()
        self.assertEqual(stat(), before, 'the launcher touched ' + global_pickle)


def main():
    result = unittest.main(exit=False, verbosity=2 if '-v' in sys.argv else 1).result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == '__main__':
    main()
