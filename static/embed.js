// <livegen-progress job="…" src="https://livegen.example">: one job's live progress card on any
// page. The card is ours, rendered by our server exactly as on our pages; this element follows it
// the way our pages do: the cards' SSE stream first, polling of the card whenever the stream is
// silent (blocked, or held back by a proxy), and never an older card over a newer one (each card
// carries its version). When the job ends it fires one `livegen:complete` (completed) or
// `livegen:error` (failed, cancelled, or a job it cannot read), bubbling and composed, whose
// `detail` is the job as GET /api/v1/ai/generation/<id>/status shows it. start() and stop();
// a new `job` or `src` starts over. No inline script or style: it runs under the host's CSP.
(function () {
  "use strict";
  if (!window.customElements || window.customElements.get("livegen-progress")) return;

  // Where this script came from: `src` defaults to the server that serves it (<base>/static/embed.js).
  var SCRIPT = document.currentScript && document.currentScript.src;
  var EMBED_CSS = "\n:host { display: block; color: var(--fg); line-height: 1.45; }\n.card { margin: 0; }\n";
  var sheets = {};  // base URL -> promise of our stylesheet: fetched once per page, shared by every card

  function now() { return Date.now(); }
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }

  function baseOf(el) {
    var src = el.getAttribute("src") || (SCRIPT ? new URL("../", SCRIPT).href : location.href);
    return new URL(src, location.href).href.replace(/\/?$/, "/");
  }
  function urlFor(base, path) { return new URL(path, base).href; }

  // Our stylesheet, its :root rules made :host rules: the colours are custom properties on :root,
  // which a shadow tree does not see. Constructed rather than a <style>, so a host CSP without
  // 'unsafe-inline' allows it; a host may still set the properties (--card, --accent…) on the element.
  function stylesFor(base) {
    if (!sheets[base]) {
      sheets[base] = fetch(urlFor(base, "static/app.css")).then(function (response) {
        if (!response.ok) throw new Error("app.css: " + response.status);
        return response.text();
      }).then(function (css) {
        var sheet = new CSSStyleSheet();
        sheet.replaceSync(css.replace(/:root\b/g, ":host") + EMBED_CSS);
        return sheet;
      });
      sheets[base].catch(function () { delete sheets[base]; });  // the next card tries again
    }
    return sheets[base];
  }

  // A card from the server (a poll's fragment, or a stream event's data), made fit for another
  // page: links absolute (they are ours, not the host's), Cancel dropped (a page on another origin
  // may change nothing: the server refuses its POSTs), inline style moved to the CSSOM, which a
  // host CSP without 'unsafe-inline' allows.
  function parseCard(html, base) {
    var template = document.createElement("template");
    // Renamed before parsing: a style attribute parsed under such a CSP is refused, and reported.
    // (Text and attribute values in the card are escaped: `"` never appears there unescaped.)
    template.innerHTML = html.replace(/ style="/g, ' data-style="');
    var card = template.content.querySelector(".card[data-job]");
    if (!card) return null;
    each(card.querySelectorAll("form"), function (form) { form.remove(); });
    each(card.querySelectorAll("a[href]"), function (a) { a.setAttribute("href", urlFor(base, a.getAttribute("href"))); });
    each(card.querySelectorAll("[data-style]"), restyle);
    return card;
  }

  function restyle(el) {
    var rules = el.getAttribute("data-style").split(";");
    el.removeAttribute("data-style");
    rules.forEach(function (rule) {
      var colon = rule.indexOf(":");
      if (colon > 0) el.style.setProperty(rule.slice(0, colon).trim(), rule.slice(colon + 1).trim());
    });
  }

  // As on our pages (app.js): a card never replaces a newer one.
  function isOlder(card, version) {
    return card && version !== undefined && Number(version) < Number(card.dataset.version);
  }

  // How often the card asks to be polled: its own trigger says (hx-trigger="every 1s").
  function pollInterval(card) {
    var every = /every (\d+(?:\.\d+)?)s/.exec(card.getAttribute("hx-trigger") || "");
    return every ? Number(every[1]) * 1000 : null;
  }

  function parseTiming(header) {
    try { return header ? JSON.parse(header) : null; } catch (e) { return null; }
  }

  // --- the time shown between updates, as app.js does on our pages ---------------------------
  function fmt(ms) {
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), r = Math.floor(s % 60);
    return m + " min " + (r < 10 ? "0" : "") + r + " s";
  }
  function setText(card, selector, text) {
    var node = card.querySelector(selector);
    if (node) node.textContent = text;
  }
  function countDown(card, since, timing) {
    if (card.dataset.remaining === undefined) return;
    // Not below a share of what came (as the server does): the next update brings fresh figures.
    var left = function (ms) { return Math.max(Number(ms) / timing.hold_share, Number(ms) - since); };
    var soon = left(card.dataset.remaining) < timing.soon_ms;
    setText(card, ".remaining", soon ? "any moment now" : "about " + fmt(left(card.dataset.remaining)));
    var range = card.querySelector(".range");
    if (!range) return;
    range.hidden = soon;
    range.textContent = fmt(left(card.dataset.remainingLow)) + "–" + fmt(left(card.dataset.remainingHigh));
  }

  // --- one run of following one job: start() makes one, stop() ends it ------------------------
  function Follow(el, job, base) {
    this.el = el;
    this.job = job;
    this.base = base;
    this.live = true;        // false once stopped or finished: late answers then change nothing
    this.ended = false;      // the job has ended: no stream, no polls, one event
    this.source = null;
    this.timing = null;      // from the first card's X-Livegen-Timing
    this.pollMs = 1000;      // until a card says otherwise
    this.lastSse = 0;        // when the stream last said anything (pings too)
    this.failures = 0;
    this.nextPollAt = 0;
    this.moved = ["", 0];    // tokens/phase, and when they last changed: heartbeats are not progress
    this.known = null;       // status/phase last announced
  }

  Follow.prototype.begin = function () {
    var self = this, root = this.el.shadowRoot;
    // Another job's card (or note) goes: versions of two jobs say nothing of each other.
    each(root.querySelectorAll(".card"), function (old) { if (old.dataset.job !== self.job) old.remove(); });
    this.styled = stylesFor(this.base).then(function (sheet) { root.adoptedStyleSheets = [sheet]; });
    this.styled.catch(function () {});  // polling goes on; the next start fetches the sheet again
    this.ticker = setInterval(function () { self.tick(); }, 100);
    this.poll();  // the first paint; the stream opens once a card is shown
  };

  Follow.prototype.card = function () { return this.el.shadowRoot.querySelector(".card[data-job]"); };

  Follow.prototype.sseFresh = function () {
    return this.timing !== null && now() - this.lastSse < this.timing.sse_fresh_ms;
  };

  Follow.prototype.schedule = function (ms) {
    var self = this;
    clearTimeout(this.pollTimer);
    if (this.live && !this.ended) this.pollTimer = setTimeout(function () { self.poll(); }, ms);
  };

  // Polling, paused while the stream is fresh; after failures it backs off instead of stopping.
  Follow.prototype.poll = function () {
    var self = this;
    if (this.sseFresh() || now() < this.nextPollAt) { this.schedule(this.pollMs); return; }
    fetch(urlFor(this.base, "jobs/" + encodeURIComponent(this.job) + "/card"), { headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status === 404) return self.unreadable();
        if (!response.ok) throw new Error("card: " + response.status);
        self.timing = parseTiming(response.headers.get("X-Livegen-Timing")) || self.timing;
        return response.text().then(function (html) {
          self.failures = 0;
          self.nextPollAt = 0;
          return self.receive(html);
        });
      })
      .catch(function () { self.backOff(); })
      .then(function () { self.schedule(self.pollMs); });
  };

  Follow.prototype.backOff = function () {
    this.failures += 1;
    this.nextPollAt = now() + Math.min(30000, 500 * Math.pow(2, this.failures));
  };

  // The cards' stream (one job on it), opened once the first card is shown.
  Follow.prototype.connect = function () {
    if (this.source || !this.live || this.ended || !window.EventSource) return;
    var self = this;
    var source = this.source = new EventSource(urlFor(this.base, "jobs/stream?jobs=" + encodeURIComponent(this.job)));
    source.addEventListener("job-" + this.job, function (evt) {
      self.lastSse = now();
      self.receive(evt.data);
    });
    source.addEventListener("ping", function () { self.lastSse = now(); });
    // Every job on it has ended: the server says so, so that the browser does not reconnect.
    source.addEventListener("close", function () { self.disconnect(); });
  };

  Follow.prototype.disconnect = function () {
    if (this.source) this.source.close();
    this.source = null;
  };

  // A card, once our stylesheet is in (no unstyled flash), unless a newer one is shown already.
  Follow.prototype.receive = function (html) {
    var self = this;
    return this.styled.then(function () {
      if (!self.live || self.ended) return;
      var card = parseCard(html, self.base), shown = self.card();
      if (!card || isOlder(shown, card.dataset.version)) return;
      self.pollMs = pollInterval(card) || self.pollMs;
      if (shown) shown.replaceWith(card); else self.el.shadowRoot.prepend(card);
      self.adopt(card);
    });
  };

  Follow.prototype.adopt = function (card) {
    card.dataset.receivedAt = String(now());
    var progress = card.dataset.tokens + "/" + card.dataset.phase;
    if (this.moved[0] !== progress) this.moved = [progress, now()];
    var key = card.dataset.status + "/" + card.dataset.phase;
    if (this.known !== null && this.known !== key) {
      this.el.shadowRoot.querySelector("[aria-live]").textContent = card.querySelector(".headline").textContent.trim();
    }
    this.known = key;
    if (card.dataset.ended === "true") this.finish();
    else this.connect();
  };

  // Elapsed and time since submit tick every 100 ms, the time left counts down, and a stream
  // that stops moving is said to look stalled: the same as our pages, between two updates.
  Follow.prototype.tick = function () {
    var card = this.card();
    if (!card || !this.timing || card.dataset.ended !== "false") return;
    var since = now() - Number(card.dataset.receivedAt);
    if (card.dataset.running === "true") setText(card, ".elapsed", fmt(Number(card.dataset.elapsed) + since));
    setText(card, ".since-submit", fmt(Number(card.dataset.sinceSubmit) + since) + " since submit");
    countDown(card, since, this.timing);
    var stalled = card.querySelector(".stalled"), phase = card.dataset.phase;
    if (stalled && card.dataset.running === "true" && (phase === "generating" || phase === "thinking") &&
        now() - this.moved[1] >= this.timing.stalled_after_ms) {
      stalled.hidden = false;  // the next change re-renders the card, note hidden again
    }
  };

  // The job has ended: nothing more to follow; tell the host, with the job's own data.
  Follow.prototype.finish = function () {
    this.ended = true;
    this.quiet();
    this.announce();
  };

  Follow.prototype.announce = function () {
    var self = this;
    fetch(urlFor(this.base, "api/v1/ai/generation/" + encodeURIComponent(this.job) + "/status"))
      .then(function (response) {
        if (response.status === 404) return self.unreadable();  // deleted since it ended
        if (!response.ok) throw new Error("status: " + response.status);
        return response.json().then(function (body) {
          var card = self.card();  // the ended card, as the server rendered it, says how it ended
          self.fire(card && card.dataset.completed === "true" ? "livegen:complete" : "livegen:error", body.job);
        });
      })
      .catch(function () {
        if (!self.live) return;
        self.backOff();
        self.retry = setTimeout(function () { self.announce(); }, self.nextPollAt - now());
      });
  };

  // 404: no such job, or not one this page may read (PRIVATE_JOBS). Said on the card and as an error.
  Follow.prototype.unreadable = function () {
    if (!this.live) return;
    var note = document.createElement("p");
    note.className = "card badge failure";
    note.textContent = "This job cannot be shown here: there is no such job, or it is private.";
    each(this.el.shadowRoot.querySelectorAll(".card"), function (old) { old.remove(); });
    this.el.shadowRoot.prepend(note);
    this.ended = true;
    this.quiet();
    this.fire("livegen:error", { job_id: this.job, status: null, error_message: note.textContent });
  };

  // One event per job and element, however many ways the end arrived (stream, poll, restart).
  Follow.prototype.fire = function (name, job) {
    if (!this.live) return;
    this.halt();
    if (this.el._announced === this.job) return;
    this.el._announced = this.job;
    this.el.dispatchEvent(new CustomEvent(name, { detail: job, bubbles: true, composed: true }));
  };

  Follow.prototype.quiet = function () {
    this.disconnect();
    clearTimeout(this.pollTimer);
    clearTimeout(this.retry);
    clearInterval(this.ticker);
  };

  Follow.prototype.halt = function () {
    this.live = false;
    this.quiet();
    if (this.el._run === this) this.el._run = null;
  };

  // --- the element ----------------------------------------------------------------------------
  class LivegenProgress extends HTMLElement {
    static get observedAttributes() { return ["job", "src"]; }

    constructor() {
      super();
      this._run = null;
      this._announced = null;   // the job whose end was told: never twice
      this._connected = false;
      var root = this.attachShadow({ mode: "open" });
      var live = document.createElement("p");
      live.className = "sr-only";
      live.setAttribute("aria-live", "polite");  // status changes, read out as on our pages
      root.appendChild(live);
    }

    connectedCallback() {
      this._connected = true;
      this.start();
    }

    disconnectedCallback() {
      this._connected = false;
      this.stop();
    }

    // (Before connectedCallback, when the element is upgraded, the attributes come here too.)
    attributeChangedCallback(name, old, value) {
      if (this._connected && old !== value) this.start();
    }

    get running() { return this._run !== null; }

    start() {
      this.stop();
      var job = this.getAttribute("job");
      if (!job) return;
      this._run = new Follow(this, job, baseOf(this));
      this._run.begin();
    }

    stop() {
      if (this._run) this._run.halt();
    }
  }

  window.customElements.define("livegen-progress", LivegenProgress);
})();
