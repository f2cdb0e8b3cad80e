"""Generate ``conversations.jsonl``: the fixed, seeded customer conversations the cost benchmark replays.

    python -m benchmarks.data.make_conversations [--count 220] [--seed 6] [--output PATH]

Each conversation is built from hand-written per-intent scenarios written against the sample policy
(Northwind Outfitters): an opening message, follow-ups that refer back to what was said ("and the
boots?", "ok so for that order"), sometimes a second topic, small talk, and sometimes a closing
request for a person. Phrasing varies per placeholder (products, order numbers, countries), and about
one turn in eight gets a typo. Every turn carries the triage verdict the fake model must return, so a
replay is deterministic, the answer length in tokens, and the route Switchboard's routing is expected
to take (checked here with the real :func:`handoff.routing.decide`): handoffs only ever happen on the
last turn, so Switchboard and the naive baseline replay exactly the same customer turns. The same words
always get the same verdict and answer length, so the fake can answer from the customer's text alone.

The output is committed; rerunning with the same seed reproduces it byte for byte.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handoff.routing import RoutingPolicy, decide

OUTPUT_PATH = Path(__file__).resolve().parent / "conversations.jsonl"
DEFAULT_COUNT = 220
DEFAULT_SEED = 6
MIN_TURNS, MAX_TURNS = 4, 12
TYPO_RATE = 0.12  # share of customer turns with one typo: real chat is not proof-read
# The routing the benchmark runs with: the service defaults, except max_bot_turns (see benchmarks/cost.py).
ROUTING = RoutingPolicy(
    intent_thresholds={"payments_billing": 0.7, "account_privacy": 0.75, "complaint": 0.8}, max_bot_turns=12
)

# -- vocabulary --------------------------------------------------------------------------------------

PRODUCTS = [
    "tent", "2-person tent", "Basecamp 3 tent", "sleeping bag", "down sleeping bag", "backpack",
    "65L backpack", "rain jacket", "softshell jacket", "fleece", "camping stove", "sleeping mat",
    "headlamp", "climbing harness", "base layer top", "down jacket", "self-inflating mat", "bivvy bag",
]  # fmt: skip
CLOTHES = ["rain jacket", "fleece", "hiking boots", "trail runners", "softshell jacket", "down jacket"]
SIZES = ["S", "M", "L", "XL", "42", "43", "44", "10", "9.5", "UK 8"]
COLOURS = ["black", "green", "navy", "red", "the grey one", "olive", "blue"]
COUNTRIES_OK = ["Germany", "the Netherlands", "France", "Spain", "Italy", "Poland", "Austria", "Ireland"]
COUNTRIES_NO = ["Switzerland", "Norway", "Canada", "Iceland", "the Canary Islands"]
US_STATES = ["Colorado", "Texas", "Oregon", "Alaska", "Hawaii", "New York", "Utah"]
UK_PLACES = ["Leeds", "Inverness", "Belfast", "Cardiff", "the Isle of Skye", "Bristol"]
NAMES = ["Anna", "Tom", "Priya", "Lukas", "Sofia", "Jamal", "Emma", "Chen", "Marta", "Dave", "Ines", "Ola"]
STORES = ["Berlin", "Munich", "Amsterdam", "Manchester", "London", "Denver", "Seattle"]
RENTALS = ["tent", "avalanche kit", "child carrier", "pair of snowshoes", "sleeping bag", "backpack", "stove"]
PAYMENTS = ["Klarna", "PayPal", "Apple Pay", "my Visa", "iDEAL", "Affirm", "a gift card", "SEPA transfer"]
TRIPS = ["the Alps", "a Lake District weekend", "Yosemite", "a hut trip in Austria", "the Highlands"]


def order_no(rng: random.Random) -> str:
    return rng.choice(["NW-", "NW", "#", "order "]) + str(rng.randint(1_000_000, 9_999_999))


# -- verdict specs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What triage says about one kind of turn, and how long the answer is."""

    intent: str
    conf: tuple[float, float] = (0.72, 0.96)
    urgency: str = "normal"
    sentiment: str = "neutral"
    wants_human: bool = False
    answer: tuple[int, int] = (70, 200)  # answer tokens
    reason: str = "covered by the policy"


def S(intent: str, **kw: Any) -> Spec:
    return Spec(intent, **kw)


SMALL = Spec("other", conf=(0.8, 0.97), sentiment="positive", answer=(18, 45), reason="small talk")

# A scenario: openers (spec, variants), follow-ups [(spec, variants)], and an optional closing handoff.
Turn = tuple[Spec, list[str]]

SCENARIOS: dict[str, dict[str, Any]] = {
    "returns": {
        "open": (
            S("returns_refunds"),
            [
                "Hi, I want to return a {product} I bought 2 weeks ago, how does that work?",
                "hello! can I still return my {product}? got it on the {day}th of last month",
                "I'd like to send back the {product} from order {order}, it's not what I expected",
                "How long do I have to return stuff? I bought a {product} and I'm not sure about it",
                "Hey there. My {product} arrived but I don't love it. Return options?",
                "Is the return free? I ordered a {product} and want my money back",
            ],
        ),
        "follow": [
            (
                S("returns_refunds"),
                [
                    "I only tried it out at home once to check it, is that still ok?",
                    "ok and do I need the original box? I kind of threw it away",
                    "what if I took the tags off already",
                    "I used it once on a short walk, nothing muddy. still returnable?",
                ],
            ),
            (
                S("returns_refunds", answer=(60, 140)),
                [
                    "How long until I get the refund?",
                    "and when does the money come back? I paid with {payment}",
                    "how fast is the refund to {payment}?",
                    "so how many days for the refund after you get it",
                ],
            ),
            (
                S("returns_refunds", answer=(50, 130)),
                [
                    "Can I drop it off at a store instead? I'm near {store}",
                    "is there a shop in {store} where I can hand it in",
                    "do I have to print the label or is there a QR code?",
                ],
            ),
            (
                S("returns_refunds"),
                [
                    "Do I get the shipping cost back too?",
                    "will you refund the express shipping I paid for?",
                    "it was part of a bigger order, do I lose the free shipping then?",
                ],
            ),
            (
                S("returns_refunds", answer=(60, 150)),
                [
                    "I'd rather have store credit actually, is that possible?",
                    "can you put it on a gift card instead of my card",
                    "my card expired since then, where does the refund go?",
                ],
            ),
            (
                S("returns_refunds"),
                [
                    "What about the socks from the same order, I opened the pack",
                    "and the gas cartridge that came with it? it's unopened",
                    "the order also had a free water bottle, do I have to send that back too?",
                ],
            ),
            (
                S("returns_refunds", answer=(50, 120)),
                [
                    "how long do I have to send it after I register the return?",
                    "I registered it 3 weeks ago but never sent it, is it still valid?",
                ],
            ),
        ],
    },
    "shipping": {
        "open": (
            S("shipping"),
            [
                "Hi, how long does shipping to {country} take?",
                "do you ship to {country_no}?",
                "How much is delivery to {uk_place}? my order is about £40",
                "When will my order arrive if I order today? I'm in {us_state}",
                "hey, whats the cheapest way to get a {product} delivered to {country}",
                "Do you deliver to parcel lockers? I'm in {country}",
            ],
        ),
        "follow": [
            (
                S("shipping", answer=(50, 130)),
                [
                    "And with express?",
                    "what's the express price then",
                    "is next day possible if I order before lunch?",
                    "what if I order on a Saturday?",
                ],
            ),
            (
                S("shipping"),
                [
                    "Is shipping free over a certain amount?",
                    "do members get free shipping?",
                    "my basket is at 70 euros, how much more for free delivery",
                ],
            ),
            (
                S("shipping", answer=(60, 140)),
                [
                    "The {product} is quite big, is there an extra charge for that?",
                    "is there a bulky fee on a tent? it's 9 kg packed",
                    "I also want a paddle board, any surcharge?",
                ],
            ),
            (
                S("shipping"),
                [
                    "Can you send gas cartridges with it?",
                    "and the stove fuel, can that go express?",
                    "can the bear spray go to a pick-up point?",
                ],
            ),
            (
                S("shipping", answer=(40, 110)),
                [
                    "will I have to pay customs?",
                    "any import duties for me?",
                    "the courier is asking me for 23 euros import fee, should I pay?",
                ],
            ),
            (
                S("shipping", answer=(50, 130)),
                [
                    "which carrier do you use there?",
                    "how do I track it?",
                    "when does the tracking link start working",
                ],
            ),
        ],
    },
    "orders": {
        "open": (
            S("orders"),
            [
                "I just placed an order {order} and want to change the size, is that possible?",
                "Can I cancel my order? I ordered about 20 minutes ago",
                "I never got an order confirmation email, did my order go through?",
                "hi I made a mistake in the delivery address on {order}",
                "how many of the same item can I order? we need 8 of the same {product} for our scout group",
                "My order {order} shows 'processing' since yesterday, is that normal?",
            ],
        ),
        "follow": [
            (
                S("orders", answer=(50, 130)),
                [
                    "It's been more than an hour though. Can it still be changed?",
                    "what if it's already been released to the warehouse?",
                    "ok I'll do it from the order page. where exactly is that",
                ],
            ),
            (
                S("orders"),
                [
                    "I checked spam, nothing there. Should I just order again?",
                    "I used my work email I think. does that matter",
                    "I ordered as a guest, no account. can I still see the order?",
                ],
            ),
            (
                S("orders", answer=(60, 140)),
                [
                    "I'm seeing two charges on my card for it, why?",
                    "there's a pending amount on my bank for the cancelled item",
                    "why was I charged when it hasn't shipped yet",
                ],
            ),
            (
                S("orders"),
                [
                    "One of the items is a custom embroidered fleece, can I still cancel that?",
                    "and the rope I ordered cut to length?",
                ],
            ),
            (
                S("orders", answer=(60, 150)),
                ["for a bigger group order, is there a discount?", "we're a school, can we pay by invoice?"],
            ),
            (
                S("orders", answer=(40, 110)),
                [
                    "the price on the site dropped by 30 euros since I ordered, can I get that?",
                    "the {product} was listed way cheaper yesterday, was that a mistake?",
                ],
            ),
        ],
    },
    "exchanges": {
        "open": (
            S("exchanges"),
            [
                "Ordered the {clothes} in the wrong size, too small. Can I swap for size {size}?",
                "hi, I need to exchange my {clothes} for a different colour, {colour} if you have it",
                "Can I exchange the {clothes} I got for a bigger size?",
                "the fit of the {clothes} is weird, can I get a different size sent?",
            ],
        ),
        "follow": [
            (
                S("exchanges", answer=(50, 130)),
                [
                    "Do I have to wait until you get the old ones back?",
                    "how long does the exchange take",
                    "when will the new size ship",
                ],
            ),
            (S("exchanges"), ["What if size {size} is out of stock?", "what if the {colour} is sold out"]),
            (
                S("exchanges", answer=(60, 140)),
                [
                    "And if the new size doesn't fit either? can I exchange again?",
                    "is a second exchange free too?",
                ],
            ),
            (
                S("exchanges"),
                [
                    "Could I swap it for a different model instead? It's 20 euros more",
                    "can I exchange it for the {product} instead",
                ],
            ),
            (
                S("exchanges", answer=(40, 100)),
                [
                    "someone said you do fitting calls? how does that work",
                    "is the video fitting in German too?",
                ],
            ),
        ],
    },
    "warranty": {
        "open": (
            S("warranty_repairs"),
            [
                "The zip on my {clothes} broke after 8 months. Is that covered?",
                "my tent pole snapped on the second trip, what can I do?",
                "Hi the seam on my {product} is coming apart, bought it last year",
                "The waterproofing on my jacket seems to be failing, it's 1.5 years old",
                "Do you repair stuff that wasn't bought from you? my boots need resoling",
            ],
        ),
        "follow": [
            (
                S("warranty_repairs", answer=(60, 140)),
                [
                    "how do I make the claim? do you need photos?",
                    "what photos do you need exactly",
                    "I got it as a gift, no order number. can I still claim?",
                ],
            ),
            (
                S("warranty_repairs"),
                [
                    "How long does a repair take? I have a trip to {trip} in 3 weeks",
                    "can you just replace it instead, I'm going away soon",
                ],
            ),
            (
                S("warranty_repairs", answer=(50, 120)),
                [
                    "and if it's not covered, what would a repair cost?",
                    "how much is a new zip on a jacket",
                    "what does resoling cost?",
                ],
            ),
            (
                S("warranty_repairs"),
                [
                    "It's the Northwind Basecamp brand if that matters",
                    "does the warranty cover the sleeping bag too, same brand",
                ],
            ),
            (
                S("warranty_repairs", answer=(40, 110)),
                ["do I pay for shipping it to you?", "Is there a discount on repairs for members?"],
            ),
        ],
    },
    "rentals": {
        "open": (
            S("rentals"),
            [
                "I want to rent a {rental} for a trip to {trip}, how does it work?",
                "how much is renting a {rental} for a week?",
                "Do you rent {rental}s in the US? I'm in {us_state}",
                "hi! is there a deposit when renting a {rental}?",
            ],
        ),
        "follow": [
            (
                S("rentals", answer=(60, 150)),
                [
                    "How much is the deposit and when do I get it back?",
                    "is the deposit actually charged or just held",
                    "my trip is 12 days, will the hold show twice?",
                ],
            ),
            (
                S("rentals"),
                [
                    "What if I bring it back a day late?",
                    "can I extend the rental if the weather is bad",
                    "what happens if it gets damaged?",
                ],
            ),
            (
                S("rentals", answer=(50, 130)),
                [
                    "Can I cancel if the trip gets called off?",
                    "if I cancel 5 days before do I get anything back?",
                ],
            ),
            (
                S("rentals"),
                [
                    "can I pick it up at the {store} store instead of delivery?",
                    "do I have to clean the {rental} before sending it back",
                ],
            ),
            (
                S("rentals", answer=(40, 100)),
                ["Is there insurance or some kind of damage cover?", "do members get a discount on rentals?"],
            ),
        ],
    },
    "membership": {
        "open": (
            S("membership"),
            [
                "What's the difference between Ranger and Summit in Trail Club?",
                "Is Trail Club worth it? I order maybe 4 times a year",
                "I want to cancel my Trail Club membership, it renewed yesterday",
                "how do trail club points work?",
            ],
        ),
        "follow": [
            (
                S("membership", answer=(50, 130)),
                [
                    "Do I get points on my last order if I join now?",
                    "when do the points from my order show up?",
                    "do my points expire?",
                ],
            ),
            (
                S("membership"),
                ["If I upgrade from Ranger do I pay the full Summit price?", "can I downgrade later?"],
            ),
            (
                S("membership", answer=(50, 120)),
                [
                    "I used the free express shipping once since the renewal, "
                    "do I still get the full refund?",
                    "what happens to my points if I cancel",
                ],
            ),
            (
                S("membership"),
                [
                    "how do I turn points into a voucher?",
                    "can I use a reward voucher together with a promo code?",
                ],
            ),
        ],
    },
    "account": {
        "open": (
            S("account_privacy", conf=(0.78, 0.95)),
            [
                "I forgot my password and the reset link doesn't arrive",
                "How do I turn on two-step verification?",
                "can I change the email address on my account?",
                "How long do you keep my chat history?",
                "I want to stop getting your marketing emails",
            ],
        ),
        "follow": [
            (
                S("account_privacy", conf=(0.78, 0.95), answer=(40, 110)),
                ["how long is the reset link valid?", "the link says expired, I clicked it after lunch"],
            ),
            (
                S("account_privacy", conf=(0.78, 0.95)),
                [
                    "I unsubscribed 2 days ago and still got an email today",
                    "will I still get emails about my return?",
                ],
            ),
            (
                S("account_privacy", conf=(0.78, 0.95), answer=(50, 120)),
                ["can I download my data myself?", "who is the data controller for UK customers?"],
            ),
        ],
    },
    "payments": {
        "open": (
            S("payments_billing", conf=(0.74, 0.95)),
            [
                "Which payment methods do you accept in {country}?",
                "My card was declined, was I charged anyway?",
                "Can I pay with {payment}?",
                "I paid by bank transfer 3 days ago, the order still says waiting for payment",
                "do you take Affirm? order is about $250",
            ],
        ),
        "follow": [
            (
                S("payments_billing", conf=(0.74, 0.95), answer=(50, 130)),
                ["can I split it with two gift cards?", "can I use a gift card and {payment} together?"],
            ),
            (
                S("payments_billing", conf=(0.74, 0.95)),
                [
                    "when is my card actually charged?",
                    "the authorisation is still on my account for a cancelled item",
                ],
            ),
            (
                S("payments_billing", conf=(0.74, 0.95), answer=(40, 110)),
                ["what if the transfer arrives after 7 days?", "how long until the hold disappears?"],
            ),
            (
                S("payments_billing", conf=(0.74, 0.95)),
                [
                    "someone called me asking for my card code saying they're you",
                    "I got an email asking to confirm my order, is that legit?",
                ],
            ),
        ],
    },
    "product": {
        "open": (
            S("product_question", conf=(0.7, 0.92)),
            [
                "Is the {product} waterproof?",
                "what's the warranty on your own brand tents?",
                "How do I re-proof a rain jacket?",
                "is the {product} good for {trip}?",
                "does the down sleeping bag come with a storage sack?",
            ],
        ),
        "follow": [
            (
                S("product_question", conf=(0.7, 0.92), answer=(60, 160)),
                ["How should I wash it?", "can it go in the dryer?", "how do I store it over the winter"],
            ),
            (
                S("product_question", conf=(0.7, 0.92)),
                [
                    "Is there a price match if I find it cheaper?",
                    "I saw it cheaper on another shop's site, will you match it?",
                ],
            ),
            (
                S("product_question", conf=(0.7, 0.92), answer=(40, 120)),
                ["do you have a student discount?", "any promo codes at the moment?"],
            ),
        ],
    },
    "complaint": {
        "open": (
            S("complaint", conf=(0.82, 0.93), sentiment="negative"),
            [
                "My parcel was supposed to come with express yesterday and it's still not here. "
                "I paid extra for that!",
                "The tent I got was damaged in the box, really disappointed",
                "Tracking says delivered but I have nothing. This is the second time.",
                "Your courier left my parcel in the rain and the box is soaked",
            ],
        ),
        "follow": [
            (
                S("complaint", conf=(0.82, 0.93), answer=(60, 150)),
                [
                    "ok. do I get the express fee back then?",
                    "what happens now, do you send a new one?",
                    "ok I checked with the neighbours, nobody has it",
                ],
            ),
            (
                S("complaint", conf=(0.82, 0.93)),
                ["I took photos of the box, where do I send them?", "do I need to keep the packaging?"],
            ),
            (
                S("complaint", conf=(0.82, 0.93), answer=(50, 120)),
                ["how do I escalate this if I'm not happy", "is there any compensation for this?"],
            ),
        ],
    },
    "smalltalk": {
        "open": (SMALL, ["hi", "Hello?", "hey, anyone there?", "good morning :)"]),
        "follow": [],
    },
}

# Conversation glue that carries no topic: greetings, thanks, fillers. Answered briefly.
SMALL_FOLLOW: list[str] = [
    "ok thanks", "great, thank you!", "perfect", "cool, that helps", "ah ok makes sense", "alright",
    "thanks a lot, you've been very helpful", "nice one", "ok got it", "brilliant, cheers",
    "ok. one more thing", "thank you so much!!", "ok that's clear now",
]  # fmt: skip
SECOND_TOPIC_LEAD = [
    "Also, ",
    "Oh and ",
    "Different question: ",
    "while I have you, ",
    "One more thing - ",
    "",
]

# The last turn may go to a person; each closing kind is a routing path the real service takes.
CLOSERS: dict[str, tuple[Spec, list[str]]] = {
    "wants_human": (
        S("other", conf=(0.3, 0.6), wants_human=True, answer=(30, 60), reason="asks for a person"),
        [
            "Can I talk to a person please?",
            "I'd like to speak to a human about this",
            "can I speak to someone on your team?",
            "is there a real person I can chat with?",
            "could you put me through to an agent please",
        ],
    ),
    "account_lookup": (
        S("orders", conf=(0.2, 0.5), answer=(60, 120), reason="needs the order record"),
        [
            "Can you check where exactly my order {order} is right now?",
            "could you look up {order} and tell me what's going on with it",
            "please check my account, I think the refund for {order} went to the wrong card",
        ],
    ),
    "negative": (
        S("complaint", conf=(0.5, 0.75), sentiment="negative", answer=(60, 130), reason="upset customer"),
        [
            "This is ridiculous, I've been waiting for weeks and nobody does anything",
            "Honestly this is the worst service I've had, I'm really annoyed now",
            "I'm so fed up with this, it should have been sorted days ago",
        ],
    ),
    "urgent": (
        S(
            "complaint",
            urgency="urgent",
            conf=(0.3, 0.6),
            sentiment="negative",
            answer=(50, 110),
            reason="safety issue",
        ),
        [
            "the stove I bought is leaking gas when I connect the cartridge, what do I do",
            "there's a charge on my card for an order I never made, I think my account was hacked",
        ],
    ),
    "privacy": (
        S("account_privacy", conf=(0.3, 0.6), answer=(50, 110), reason="data deletion request"),
        [
            "Please delete all my data and my account.",
            "I want a copy of all the personal data you hold on me",
        ],
    ),
}
CLOSER_WEIGHTS = {
    "none": 58,
    "wants_human": 14,
    "account_lookup": 10,
    "negative": 8,
    "urgent": 4,
    "privacy": 6,
}
INTENT_WEIGHTS = {
    "returns": 16, "shipping": 14, "orders": 12, "exchanges": 9, "warranty": 9, "rentals": 8, "membership": 7,
    "account": 6, "payments": 7, "product": 7, "complaint": 6, "smalltalk": 4,
}  # fmt: skip

# A follow-up that already starts like this gets no back-reference in front ("ok so and ...").
CONNECTIVES = {"and", "so", "ok", "ok.", "hmm", "thanks.", "right,"}
GREETING = re.compile(r"^(hi|hello|hey)( there)?[!,.]*\s+", re.IGNORECASE)

# Back-references that make follow-ups depend on earlier turns.
BACKREFS = ["", "", "", "ok so ", "and ", "right, ", "so for the {product} I mentioned, ", "hmm ok. ",
            "thanks. ", "about what you said, "]  # fmt: skip


# -- building ----------------------------------------------------------------------------------------


class Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # The same words always get the same verdict and answer length, so the fake model can answer
        # from the customer's text alone (a pure lookup, safe with any number of conversations at once).
        self.memo: dict[str, tuple[dict[str, Any], int]] = {}

    def fill(self, text: str, ctx: dict[str, str]) -> str:
        return text.format(**ctx)

    @staticmethod
    def join(lead: str, text: str) -> str:
        """``lead + text``, with the text's capital dropped after a lead ("ok so could I...")."""
        if lead and text[:2] not in ("I ", "I'") and not text[:2].isupper():
            text = text[0].lower() + text[1:]
        return lead + text

    def typo(self, text: str) -> str:
        rng = self.rng
        words = text.split(" ")
        candidates = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
        if not candidates:
            return text.lower()
        i = rng.choice(candidates)
        w = words[i]
        kind = rng.randrange(4)
        j = rng.randrange(1, len(w) - 2)
        if kind == 0:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]  # swapped letters
        elif kind == 1:
            w = w[:j] + w[j + 1 :]  # dropped letter
        elif kind == 2:
            w = w[:j] + w[j] + w[j:]  # doubled letter
        else:
            return text.lower().rstrip("?.!")  # lazy typing
        words[i] = w
        return " ".join(words)

    def follow_ups(self, groups: list[tuple[Spec, list[str]]]) -> list[tuple[Spec, str]]:
        """One phrasing of each follow-up first (shuffled), the other phrasings only after them."""
        first: list[tuple[Spec, str]] = []
        rest: list[tuple[Spec, str]] = []
        for spec, variants in groups:
            picked = self.rng.sample(variants, len(variants))
            first.append((spec, picked[0]))
            rest += [(spec, v) for v in picked[1:]]
        self.rng.shuffle(first)
        self.rng.shuffle(rest)
        return first + rest

    def verdict(self, spec: Spec) -> dict[str, Any]:
        return {
            "intent": spec.intent,
            "urgency": spec.urgency,
            "sentiment": spec.sentiment,
            "language": "en",
            "wants_human": spec.wants_human,
            "confidence": round(self.rng.uniform(*spec.conf), 2),
            "reason": spec.reason,
        }

    def turn(self, spec: Spec, text: str) -> dict[str, Any]:
        if self.rng.random() < TYPO_RATE:
            text = self.typo(text)
        if text not in self.memo:
            self.memo[text] = (self.verdict(spec), self.rng.randint(*spec.answer))
        verdict, answer_tokens = self.memo[text]
        return {"text": text, "triage": dict(verdict), "answer_tokens": answer_tokens}

    def conversation(self, index: int) -> dict[str, Any]:
        rng = self.rng
        intent = rng.choices(list(INTENT_WEIGHTS), weights=list(INTENT_WEIGHTS.values()))[0]
        closer = rng.choices(list(CLOSER_WEIGHTS), weights=list(CLOSER_WEIGHTS.values()))[0]
        n_turns = rng.randint(MIN_TURNS, MAX_TURNS)
        ctx = {
            "product": rng.choice(PRODUCTS), "clothes": rng.choice(CLOTHES), "size": rng.choice(SIZES),
            "colour": rng.choice(COLOURS), "country": rng.choice(COUNTRIES_OK),
            "country_no": rng.choice(COUNTRIES_NO), "us_state": rng.choice(US_STATES),
            "uk_place": rng.choice(UK_PLACES), "store": rng.choice(STORES), "rental": rng.choice(RENTALS),
            "payment": rng.choice(PAYMENTS), "trip": rng.choice(TRIPS), "order": order_no(rng),
            "day": str(rng.randint(2, 28)), "name": rng.choice(NAMES),
        }  # fmt: skip
        scenario = SCENARIOS[intent]
        turns: list[dict[str, Any]] = []
        open_spec, openers = scenario["open"]
        opener = self.fill(rng.choice(openers), ctx)
        if intent == "smalltalk":
            turns.append(self.turn(open_spec, opener))
            intent = rng.choice([k for k in SCENARIOS if k != "smalltalk"])  # then the real question
            scenario = SCENARIOS[intent]
            open_spec, openers = scenario["open"]
            opener = self.fill(rng.choice(openers), ctx)
        elif rng.random() < 0.25:
            opener = self.join(rng.choice(["Hi! ", "Hello, ", f"Hi, {ctx['name']} here. ", "hey "]), opener)
        turns.append(self.turn(open_spec, opener))
        body = n_turns - len(turns) - (0 if closer == "none" else 1)
        pool = self.follow_ups(scenario["follow"])
        second = rng.choice([k for k in SCENARIOS if k not in (intent, "smalltalk")])
        switched = False
        while body > 0:
            roll = rng.random()
            if roll < 0.18 and turns[-1]["triage"]["intent"] != "other":
                turns.append(self.turn(SMALL, rng.choice(SMALL_FOLLOW)))
            elif (roll < 0.32 or not pool) and not switched:
                switched = True
                spec, variants = SCENARIOS[second]["open"]
                opener2 = GREETING.sub("", self.fill(rng.choice(variants), ctx))  # no "hi" mid-chat
                text = self.join(rng.choice(SECOND_TOPIC_LEAD), opener2)
                turns.append(self.turn(spec, text[0].upper() + text[1:]))
                pool = self.follow_ups(SCENARIOS[second]["follow"])[:3] + pool
            elif pool:
                spec, variant = pool.pop(0)
                lead = self.fill(rng.choice(BACKREFS), ctx)
                said = " ".join(t["text"] for t in turns)
                if variant.split(" ", 1)[0].lower() in CONNECTIVES:
                    lead = ""
                if "I mentioned" in lead and ctx["product"] not in said:
                    lead = ""  # only refer back to a product the customer actually named
                text = self.join(lead, self.fill(variant, ctx))
                turns.append(self.turn(spec, text))
            else:
                turns.append(self.turn(SMALL, rng.choice(SMALL_FOLLOW)))
            body -= 1
        if closer != "none":
            spec, variants = CLOSERS[closer]
            turns.append(self.turn(spec, self.fill(rng.choice(variants), ctx)))
        elif rng.random() < 0.5:
            turns[-1] = self.turn(
                SMALL, rng.choice(["thanks, that's all!", "great, bye", "ok thank you, bye!"])
            )
        return {"id": f"c{index:03d}", "topic": intent, "closing": closer, "turns": turns}


def expected_routes(turns: list[dict[str, Any]]) -> list[str]:
    """The route the real routing takes on each turn, given the verdicts (answers are all the bot's)."""
    history: list[tuple[str, str]] = []
    routes: list[str] = []
    for turn in turns:
        t = turn["triage"]
        verdict = decide(
            wants_human=t["wants_human"], confidence=t["confidence"], urgency=t["urgency"],
            message=turn["text"], intent=t["intent"], sentiment=t["sentiment"], history=history,
            policy=ROUTING,
        )  # fmt: skip
        routes.append("answer" if verdict.answer else f"handoff:{verdict.reason}")
        history += [("customer", turn["text"]), ("assistant", "answer")]
    return routes


def generate(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` conversations; a draft whose routing would hand off before its last turn is redrawn."""
    rng = random.Random(seed)
    builder = Builder(rng)
    out: list[dict[str, Any]] = []
    seen_openers: set[str] = set()
    while len(out) < count:
        conv = builder.conversation(len(out) + 1)
        routes = expected_routes(conv["turns"])
        if any(r != "answer" for r in routes[:-1]) or conv["turns"][0]["text"] in seen_openers:
            continue
        if (conv["closing"] == "none") != (routes[-1] == "answer"):
            continue
        seen_openers.add(conv["turns"][0]["text"])
        for turn, route in zip(conv["turns"], routes, strict=True):
            turn["expected"] = route
        out.append(conv)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--output", type=Path, default=OUTPUT_PATH)
    args = parser.parse_args(argv)
    conversations = generate(args.count, args.seed)
    with args.output.open("w", encoding="utf-8") as fh:
        for conv in conversations:
            fh.write(json.dumps(conv, ensure_ascii=False) + "\n")
    turns = [len(c["turns"]) for c in conversations]
    print(f"wrote {len(conversations)} conversations, {sum(turns)} customer turns "
          f"({min(turns)}-{max(turns)} per conversation) to {args.output}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
