"""Email bounces: the VERP address each email is sent from, and the reports that come back.

``verp`` makes and reads the per-delivery bounce address
(``bounces+<token>@domain``, the token signed like a Twilio callback's);
``reports`` reads delivery status notifications (RFC 3464) and complaint
reports (RFC 5965 ARF) into plain values. Neither touches the database: the
flow that applies a report is notifier.flows.bounces, the SMTP receiver that
takes them is notifier.cli.bounces. May import the standard library's email
package, notifier.settings, notifier.deliveries.callback_tokens and
notifier.privacy; nothing above them.
"""
