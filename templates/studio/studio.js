// dripmail studio: live reload, in-place navigation, frames sized to their email.
// The page works without this script; with it, a saved file shows up without a reload.
"use strict";

(function () {
  const status = () => document.getElementById("live-status");
  let shownVersion = document.body.dataset.version;
  let refreshing = null;
  let again = false;

  function say(text, offline) {
    const el = status();
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("is-offline", Boolean(offline));
  }

  // Each iframe is as tall as its email, so the page scrolls, not the frames.
  function fitFrame(frame) {
    try {
      const doc = frame.contentDocument;
      if (!doc || !doc.documentElement) return;
      // The root element's box, not scrollHeight: that never drops below the frame's height.
      const height = Math.ceil(doc.documentElement.getBoundingClientRect().height);
      if (height > 0) frame.style.height = height + "px";
    } catch (error) {
      // A frame from elsewhere cannot be measured; it keeps its CSS height.
    }
  }

  function wireFrames(root) {
    root.querySelectorAll("iframe.email-frame").forEach((frame) => {
      frame.addEventListener("load", () => fitFrame(frame));
      if (frame.contentDocument && frame.contentDocument.readyState === "complete") fitFrame(frame);
    });
  }

  // Fetch the page at `url` and swap in what changed, keeping the header forms (and
  // whatever is being typed there) untouched.
  async function refresh(url) {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        const response = await fetch(url || location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
        const html = await response.text();
        const next = new DOMParser().parseFromString(html, "text/html");
        const open = new Set([...document.querySelectorAll("details[id][open]")].map((d) => d.id));
        const currentForm = document.querySelector("form.contact");
        const nextForm = next.querySelector("form.contact");
        if (Boolean(currentForm) !== Boolean(nextForm)) {
          document.getElementById("app").replaceWith(next.getElementById("app"));
        } else {
          document.getElementById("content").replaceWith(next.getElementById("content"));
          document.querySelector(".bar-title").replaceWith(next.querySelector(".bar-title"));
          const step = next.querySelector("form.contact input[name=step]");
          if (currentForm && step) currentForm.querySelector("input[name=step]").value = step.value;
        }
        open.forEach((id) => {
          const details = document.getElementById(id);
          if (details) details.open = true;
        });
        document.title = next.title;
        document.body.dataset.version = next.body.dataset.version;
        shownVersion = next.body.dataset.version;
        wireFrames(document);
        wireForms();
        const failing = document.getElementById("error");
        say(failing ? "Error: see the message on the page" : "Updated " + new Date().toLocaleTimeString(), Boolean(failing));
      } catch (error) {
        say("Could not update: " + error.message, true);
      } finally {
        refreshing = null;
        if (again) {
          again = false;
          refresh();
        }
      }
    })();
    return refreshing;
  }

  // Timeline links and the contact form navigate in place (history kept), so the
  // live-reload connection stays open.
  function navigate(url) {
    history.pushState(null, "", url);
    refresh(url).then(() => {
      const main = document.getElementById("email");
      if (main) main.focus({ preventScroll: true });
    });
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.tl-link");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(link.href);
  });

  function wireForms() {
    const contact = document.querySelector("form.contact");
    if (contact && !contact.dataset.wired) {
      contact.dataset.wired = "1";
      contact.addEventListener("submit", (event) => {
        event.preventDefault();
        navigate("/?" + new URLSearchParams(new FormData(contact)).toString());
      });
    }
    const send = document.querySelector("form.send-test");
    if (send && !send.dataset.wired) {
      send.dataset.wired = "1";
      send.addEventListener("submit", async (event) => {
        event.preventDefault();
        const out = document.getElementById("send-status");
        const button = send.querySelector("button");
        button.disabled = true;
        out.classList.remove("is-error");
        out.textContent = "Sending…";
        try {
          const response = await fetch(send.action, {
            method: "POST",
            headers: { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams(new FormData(send)).toString(),
          });
          const result = await response.json();
          out.textContent = result.message;
          out.classList.toggle("is-error", !result.ok);
        } catch (error) {
          out.textContent = "Not sent: " + error.message;
          out.classList.add("is-error");
        } finally {
          button.disabled = false;
        }
      });
    }
  }

  window.addEventListener("popstate", () => refresh());

  // Server-Sent Events: the server sends the campaign's version on connect and on every
  // change. EventSource reconnects by itself (after a server restart too).
  function listen() {
    const source = new EventSource("/events");
    source.addEventListener("version", (event) => {
      const failing = Boolean(document.getElementById("error"));
      say(failing ? "Error: see the message on the page" : "Watching the folder for changes", failing);
      if (event.data !== shownVersion) refresh();
    });
    source.addEventListener("error", () => say("Studio server not reachable; retrying…", true));
  }

  wireFrames(document);
  wireForms();
  listen();
})();
