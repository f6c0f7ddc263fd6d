"""Voice calls through Twilio Programmable Voice, reading the notice aloud.

The call carries its TwiML inline (``Twiml``, no webhook to fetch)::

    <Response>
      <Gather numDigits="1" action="{gather_url}" method="POST">
        <Say language="zh-TW">{body}</Say> <Pause length="1"/> <Say language="zh-TW">{body}</Say>
      </Gather>
      <Say language="zh-TW">{goodbye}</Say>
    </Response>

The body is read twice; a key pressed during it goes to ``gather_url``
(``message.menu_url``, else the channel's ``gather_url``; served by
``notifier``), which answers with :func:`gather_response`: ``1``
reads it again, ``2`` connects to the utility's service line, anything else
says goodbye. Status callbacks (``initiated``, ``ringing``, ``answered``,
``completed``) go to ``message.callback_url``.

Language: ``zh-TW`` → ``language="zh-TW"``, ``en`` → ``en-US``; any other
value is passed through as a Twilio locale. No ``voice`` is set, so Twilio
uses the account's default voice for that language (Console → Voice → Text-
to-speech). ``Polly.Zhiyu`` is not used on purpose: it speaks mainland
Mandarin (``cmn-CN``), not Taiwanese Mandarin.

Vendor pages:

* create a call: https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource
  (inline ``Twiml`` is limited to 4,000 characters, so long bodies are refused here)
* <Say> and its languages: https://www.twilio.com/docs/voice/twiml/say/text-speech
* <Gather>: https://www.twilio.com/docs/voice/twiml/gather
* call status callbacks: https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent

Errors are mapped in :mod:`channels.twilio_common`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twilio.twiml.voice_response import VoiceResponse

from channels.base import Channel, Message, PermanentChannelError, SendResult
from channels.registry import register
from channels.twilio_common import DEFAULT_BASE_URL, TwilioConnection, translate_errors

__all__ = ["TwilioVoice", "announcement", "gather_response", "say_language"]

STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")

_SAY_LANGUAGE = {"zh-TW": "zh-TW", "zh": "zh-TW", "en": "en-US"}
_GOODBYE = {"zh-TW": "謝謝您的收聽，再見。", "en-US": "Thank you. Goodbye."}
_CONNECTING = {
    "zh-TW": "正在為您轉接客服專線，請稍候。",
    "en-US": "Connecting you to our service line.",
}


def say_language(language: str) -> str:
    """The Twilio ``<Say language>`` for one of our language codes."""
    return _SAY_LANGUAGE.get(language, language)


def _say(response: Any, text: str, language: str) -> None:
    response.say(text, language=language)


def announcement(body: str, *, language: str, gather_url: str | None) -> str:
    """TwiML that reads ``body`` twice inside a one-digit ``<Gather>``, then says goodbye."""
    lang = say_language(language)
    response = VoiceResponse()
    gather = response.gather(num_digits=1, action=gather_url, method="POST" if gather_url else None)
    _say(gather, body, lang)
    gather.pause(length=1)
    _say(gather, body, lang)
    _say(response, _GOODBYE.get(lang, _GOODBYE["en-US"]), lang)
    return str(response)


def gather_response(
    digit: str, *, body: str, language: str, service_line: str, gather_url: str | None
) -> str:
    """TwiML answering a pressed key: ``1`` repeats, ``2`` dials the service line, else goodbye."""
    lang = say_language(language)
    if digit == "1":
        return announcement(body, language=language, gather_url=gather_url)
    response = VoiceResponse()
    if digit == "2":
        _say(response, _CONNECTING.get(lang, _CONNECTING["en-US"]), lang)
        response.dial(service_line)
    else:
        _say(response, _GOODBYE.get(lang, _GOODBYE["en-US"]), lang)
        response.hangup()
    return str(response)


@register("voice", "twilio")
class TwilioVoice(Channel):
    """Call the customer and read the notice, offering a repeat or the service line."""

    channel: ClassVar[str] = "voice"
    provider: ClassVar[str] = "twilio"
    twiml_maxlen: ClassVar[int] = 4000  # Twilio's limit on the inline Twiml parameter

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        service_line: str,
        gather_url: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        if not account_sid:
            raise ValueError("twilio account_sid is required")
        if not auth_token:
            raise ValueError("twilio auth_token is required")
        if not from_number:
            raise ValueError("twilio voice from_number is required")
        if not service_line:
            raise ValueError("twilio voice service_line is required")
        self.from_number = from_number
        self.service_line = service_line
        self.gather_url = gather_url
        self._twilio = TwilioConnection(
            account_sid=account_sid, auth_token=auth_token, base_url=base_url, timeout=timeout
        )

    def twiml(self, message: Message) -> str:
        """The TwiML the call will run for ``message``."""
        gather_url = message.menu_url or self.gather_url
        return announcement(message.body, language=message.language, gather_url=gather_url)

    async def send(self, message: Message) -> SendResult:
        if not message.to:
            raise PermanentChannelError("no recipient", code="no_recipient")
        to = message.to[0]
        twiml = self.twiml(message)
        if len(twiml) > self.twiml_maxlen:
            raise PermanentChannelError(
                f"TwiML of {len(twiml)} characters exceeds {self.twiml_maxlen}",
                code="twiml_too_long",
            )
        with translate_errors(to=to):
            call = await self._twilio.client().calls.create_async(
                to=to,
                from_=self.from_number,
                twiml=twiml,
                status_callback=message.callback_url,
                status_callback_event=list(STATUS_EVENTS) if message.callback_url else None,
            )
        return SendResult(
            provider=self.provider,
            provider_id=str(call.sid),
            status="sent",
            detail={"twilio_status": str(call.status)},
        )

    async def aclose(self) -> None:
        await self._twilio.aclose()
