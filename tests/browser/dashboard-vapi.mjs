// A call driven by hand: each method posts one VAPI webhook (shapes as in
// tests/fixtures/vapi/ and src/simulate/script.rs) to the hub, with a timestamp `at` ms after
// the call's start, so a test decides exactly what the dashboard sees and when.

import { randomUUID } from 'node:crypto';
import { postWebhook } from './harness.mjs';

export const ASSISTANT_ID = '3f9d2b61-7a4e-4c0f-8d15-b2e6a9c47f08';

export class FakeCall {
  constructor(hubUrl, { id = randomUUID(), customer = '+14155550142', org = 'org-browser', start = Date.now() - 60000, controlUrl } = {}) {
    Object.assign(this, { hubUrl, id, customer, org, start, controlUrl });
  }

  iso(at) { return new Date(this.start + at).toISOString(); }

  post(type, fields, at) {
    const message = {
      type,
      timestamp: this.start + at,
      call: {
        id: this.id, orgId: this.org, type: 'inboundPhoneCall', assistantId: ASSISTANT_ID, createdAt: this.iso(0),
        customer: { number: this.customer },
        monitor: {
          listenUrl: `wss://phone-call-websocket.vapi.ai/${this.id}/listen`,
          controlUrl: this.controlUrl ?? `https://phone-call-websocket.vapi.ai/${this.id}/control`,
        },
      },
      phoneNumber: { id: '9c4e1a77-0b3d-4f62-a8e5-1d7c3b9f2e60', orgId: this.org, number: '+16505550188', provider: 'twilio' },
      customer: { number: this.customer },
      assistant: { name: 'Riverside Dental Receptionist' },
      ...fields,
    };
    return postWebhook(this.hubUrl, message);
  }

  status(status, at = 0, extra = {}) { return this.post('status-update', { status, ...extra }, at); }
  partial(role, text, at) { return this.post('transcript', { role, transcriptType: 'partial', transcript: text }, at); }
  final(role, text, at) { return this.post('transcript', { role, transcriptType: 'final', transcript: text }, at); }
  speech(role, status, at) { return this.post('speech-update', { role, status, turn: 1 }, at); }

  tool(name, args, at, toolCallId = `call_${randomUUID().slice(0, 8)}`) {
    const item = { id: toolCallId, type: 'function', function: { name, arguments: args } };
    return this.post('tool-calls', { toolCallList: [item], toolCalls: [item] }, at);
  }

  report({ at, recordingUrl, summary = 'Caller rescheduled a cleaning to Tuesday at 15:00.', cost = 0.0482 }) {
    return this.post('end-of-call-report', {
      endedReason: 'customer-ended-call', cost,
      analysis: { summary, successEvaluation: 'true' },
      artifact: recordingUrl ? { recording: { mono: { combinedUrl: recordingUrl } } } : {},
      startedAt: this.iso(0), endedAt: this.iso(at),
    }, at);
  }
}
