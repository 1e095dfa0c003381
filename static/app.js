// livegen page behaviour: polling is the floor, SSE the upgrade, and time ticks smoothly.
// No inline script anywhere (the Content-Security-Policy forbids it); htmx does the swapping.
// Statuses and timings come from the server, in data- attributes: nothing here repeats them.
(function () {
  "use strict";
  var timing = document.documentElement.dataset;
  var SSE_FRESH_MS = Number(timing.sseFreshMs);         // polling pauses while SSE is this fresh
  var STALLED_AFTER_MS = Number(timing.stalledAfterMs); // a streaming job silent this long looks stalled
  var SOON_MS = Number(timing.soonMs);                  // a time left below this is "any moment now"
  var HOLD_SHARE = Number(timing.holdShare);            // a time left counts down to this share of itself
  var lastSse = 0;             // when the last SSE message (any event, pings too) arrived
  var pollFailures = 0;

  function now() { return Date.now(); }

  // --- SSE freshness: every message, pings included, proves the stream is alive -------------
  document.addEventListener("htmx:sseOpen", function (evt) {
    evt.detail.source.addEventListener("ping", function () { lastSse = now(); });
  });

  // --- never take a card back: a held-back burst or a slow poll may carry an older version ----
  // The version comes as the SSE message's id, or as a poll's X-Job-Version header.
  function isOlder(card, version) {
    return card && card.dataset && card.dataset.version && version !== "" && version !== null &&
      Number(version) < Number(card.dataset.version);
  }
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    lastSse = now();
    if (isOlder(evt.detail.elt || evt.target, evt.detail.lastEventId)) evt.preventDefault();
  });
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var elt = evt.detail.elt;
    if (elt.classList && elt.classList.contains("card") &&
        isOlder(elt, evt.detail.xhr.getResponseHeader("X-Job-Version"))) {
      evt.detail.shouldSwap = false;
    }
  });

  // --- polling: paused while SSE is fresh; after failures it backs off instead of stopping ----
  var nextPollAt = 0;
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    if (!elt.classList || !elt.classList.contains("card") || evt.detail.requestConfig.verb !== "get") return;
    if (now() - lastSse < SSE_FRESH_MS || now() < nextPollAt) evt.preventDefault();
  });
  function pollFailed(evt) {
    var elt = evt.detail.elt;
    if (!elt.classList || !elt.classList.contains("card")) return;
    pollFailures += 1;
    nextPollAt = now() + Math.min(30000, 500 * Math.pow(2, pollFailures));
  }
  document.addEventListener("htmx:responseError", pollFailed);
  document.addEventListener("htmx:sendError", pollFailed);
  document.addEventListener("htmx:afterRequest", function (evt) {
    if (!evt.detail.successful) return;
    pollFailures = 0;
    nextPollAt = 0;
  });

  // --- the prompt form never loses a prompt ---------------------------------------------------
  // The prompt is cleared the moment it is sent, so the next one can be typed at once; a Generate
  // pressed while a request is in flight is queued by htmx and reads the form when it goes. A
  // prompt whose request failed comes back (a refused one comes back with the server's form).
  var sentPrompt = null;
  function composing(evt) {
    var form = evt.detail.elt;
    return form && form.matches && form.matches("form.compose-form") ? form.querySelector("#prompt") : null;
  }
  document.addEventListener("htmx:configRequest", function (evt) {
    var prompt = composing(evt);
    if (!prompt) return;
    sentPrompt = evt.detail.parameters.get ? evt.detail.parameters.get("prompt") : evt.detail.parameters.prompt;
    if (prompt.value === sentPrompt) prompt.value = "";
  });
  function promptFailed(evt) {
    var prompt = composing(evt);
    if (prompt && !prompt.value && sentPrompt) prompt.value = sentPrompt;
  }
  document.addEventListener("htmx:sendError", promptFailed);
  document.addEventListener("htmx:responseError", promptFailed);

  // --- after every swap: remember the server's figures, announce status changes -------------
  var known = {};  // job id -> "status/phase" last announced
  var moved = {};  // job id -> [tokens/phase, when they last changed]: heartbeats alone are not progress
  function adopt(card) {
    card.dataset.receivedAt = String(now());
    followText(card);
    var progress = card.dataset.tokens + "/" + card.dataset.phase;
    if (!moved[card.dataset.job] || moved[card.dataset.job][0] !== progress) {
      moved[card.dataset.job] = [progress, now()];
    }
    var key = card.dataset.status + "/" + card.dataset.phase;
    var job = card.dataset.job;
    if (known[job] !== undefined && known[job] !== key) {
      var headline = card.querySelector(".headline");
      document.getElementById("announcer").textContent = headline ? headline.textContent.trim() : key;
      if (card.dataset.ended === "true") {
        htmx.trigger(document.body, "jobEnded", { job: job });
      }
    }
    known[job] = key;
  }
  function adoptAll(root) {
    var cards = root.querySelectorAll ? root.querySelectorAll(".card[data-job]") : [];
    if (root.matches && root.matches(".card[data-job]")) adopt(root);
    Array.prototype.forEach.call(cards, adopt);
  }
  htmx.onLoad(adoptAll);  // the first page, then every swapped-in fragment

  // --- smooth time: elapsed ticks every 100 ms, corrected by each update ---------------------
  function fmt(ms) {
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), r = Math.floor(s % 60);
    return m + " min " + (r < 10 ? "0" : "") + r + " s";
  }
  // --- the time left counts down between updates, and is corrected by each one --------------
  function countDown(card, since) {
    if (card.dataset.remaining === undefined) return;
    var point = card.querySelector(".remaining"), range = card.querySelector(".range");
    // Not below a share of what came (as the server does): the next update brings fresh figures.
    var left = function (ms) { return Math.max(Number(ms) / HOLD_SHARE, Number(ms) - since); };
    var soon = left(card.dataset.remaining) < SOON_MS;
    if (point) point.textContent = soon ? "any moment now" : "about " + fmt(left(card.dataset.remaining));
    if (range) {
      range.hidden = soon;
      range.textContent = fmt(left(card.dataset.remainingLow)) + "–" + fmt(left(card.dataset.remainingHigh));
    }
  }

  setInterval(function () {
    var cards = document.querySelectorAll('.card[data-ended="false"]');
    Array.prototype.forEach.call(cards, function (card) {
      var since = now() - Number(card.dataset.receivedAt || now());
      if (card.dataset.running === "true") {
        var out = card.querySelector(".elapsed");
        if (out) out.textContent = fmt(Number(card.dataset.elapsed) + since);
      }
      var waited = card.querySelector(".since-submit");
      if (waited) waited.textContent = fmt(Number(card.dataset.sinceSubmit) + since) + " since submit";
      countDown(card, since);
      // Slow is not stuck: a model that is loading may take minutes; a stream that stops does not.
      var stalled = card.querySelector(".stalled");
      var streaming = card.dataset.phase === "generating" || card.dataset.phase === "thinking";
      var last = moved[card.dataset.job];
      if (stalled && card.dataset.running === "true" && streaming && last &&
          now() - last[1] >= STALLED_AFTER_MS) {
        stalled.hidden = false;  // the next change re-renders the card, note hidden again
      }
    });
  }, 100);

  // --- the text as it is written ------------------------------------------------------------
  // Each piece says where it starts (in code points, as the server counts) and which attempt it
  // belongs to. It is appended only where the text shown ends: an overlap (a reconnect that
  // repeats) is trimmed, a gap is fetched, a reset (a retry) starts the text over. textContent
  // only: the text is never parsed as HTML.
  function outputFor(job) {
    return document.querySelector('pre.output-text[data-live="true"][data-job="' + job + '"]');
  }
  function atEnd(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 8; }

  function boxFor(pre, kind) {
    return kind === "text" ? pre : document.getElementById("thinking-" + pre.dataset.job);
  }
  function keyFor(kind) { return kind === "text" ? "chars" : "thinkingChars"; }

  // A new run: drop this kind's earlier text (a reset comes for each kind, the answer and the thinking).
  function startOver(pre, kind, attempt) {
    var box = boxFor(pre, kind);
    if (box) box.textContent = "";
    pre.dataset[keyFor(kind)] = "0";
    pre.dataset.attempt = String(attempt);
  }

  // The page's stream URL follows the text: if the connection is opened again, it asks from here.
  function rememberPosition(pre) {
    var live = document.getElementById("live");
    var url = live && live.getAttribute("sse-connect");
    if (!url) return;
    var at = pre.dataset.attempt + "-" + pre.dataset.chars + "-" + pre.dataset.thinkingChars;
    live.setAttribute("sse-connect", url.replace(/([?&]output=)[^&]*/, "$1" + at));
  }

  function apply(pre, kind, piece) {
    if (!pre || !piece) return;
    if (piece.reset) startOver(pre, kind, piece.attempt);
    if (Number(piece.attempt) !== Number(pre.dataset.attempt)) { fetchMissing(pre); return; }
    var key = keyFor(kind);
    var have = Number(pre.dataset[key]);
    if (piece.offset > have) { fetchMissing(pre); return; }  // a piece went missing: ask for it
    var fresh = Array.from(piece.text).slice(have - piece.offset);
    if (!fresh.length) return;
    var box = boxFor(pre, kind);
    if (!box) return;
    var follow = atEnd(box);
    box.appendChild(document.createTextNode(fresh.join("")));
    pre.dataset[key] = String(have + fresh.length);
    rememberPosition(pre);
    if (kind === "text") {
      pre.dataset.empty = "false";
      var waiting = document.querySelector("#result .waiting");
      if (waiting) waiting.hidden = true;
    } else if (box.closest("details")) {
      box.closest("details").hidden = false;
    }
    if (follow) box.scrollTop = box.scrollHeight;  // follow the end, unless the reader scrolled up
  }

  // When the stream is blocked: fetch only what this page lacks, one request at a time.
  var fetching = {};
  function fetchMissing(pre) {
    var job = pre.dataset.job;
    if (fetching[job]) return;
    fetching[job] = true;
    var url = pre.dataset.outputUrl + "?attempt=" + pre.dataset.attempt + "&from=" + pre.dataset.chars +
      "&thinking_from=" + pre.dataset.thinkingChars;
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body) { apply(pre, "thinking", body.thinking); apply(pre, "text", body.output); }
      })
      .catch(function () {})
      .then(function () { fetching[job] = false; });
  }

  document.addEventListener("htmx:sseOpen", function (evt) {
    var source = evt.detail.source;
    Array.prototype.forEach.call(document.querySelectorAll('pre.output-text[data-live="true"]'), function (pre) {
      ["output", "thinking"].forEach(function (name) {
        source.addEventListener(name + "-" + pre.dataset.job, function (e) {
          lastSse = now();
          apply(pre, name === "output" ? "text" : "thinking", JSON.parse(e.data));
        });
      });
    });
  });

  // A card that came by polling says how much text there is: fetch what is missing. (With a
  // fresh stream, the text follows the card in the same message batch.)
  function followText(card) {
    var pre = outputFor(card.dataset.job);
    var thinking = pre && document.querySelector("#result .thinking-tokens");
    if (thinking && Number(card.dataset.thinkingTokens)) thinking.textContent = card.dataset.thinkingTokens;
    if (!pre || now() - lastSse < SSE_FRESH_MS) return;
    if (card.dataset.attempt !== pre.dataset.attempt || Number(card.dataset.chars) > Number(pre.dataset.chars) ||
        Number(card.dataset.thinkingChars) > Number(pre.dataset.thinkingChars)) {
      fetchMissing(pre);
    }
  }

  // --- copy to clipboard (the buttons come hidden: without JavaScript they could do nothing) ---
  htmx.onLoad(function (root) {
    var buttons = root.querySelectorAll ? root.querySelectorAll("button[data-copy]") : [];
    Array.prototype.forEach.call(buttons, function (button) { button.hidden = false; });
  });
  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("[data-copy]");
    if (!button) return;
    var text = document.getElementById(button.dataset.copy).textContent;
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  });
})();
