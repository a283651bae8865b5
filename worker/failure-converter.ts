// The failure converter of clients, workers and the workflow bundle (loaded by path, as the SDK
// requires): failure messages and stack traces travel in an encoded payload, which the payload
// codec then encrypts like any other.
//
// Each message and stack trace of a failure's cause chain is also bounded. While an activity
// retries, Temporal keeps its last failure only up to 4 KiB (`limit.mutableStateActivityFailureSize.error`)
// and replaces a bigger one with "Failure exceeds size limit.", dropping every message of the chain;
// and some errors carry far more than a reason: drizzle's DrizzleQueryError puts the statement and
// every parameter in its message (and so in its stack), and a batch insert's parameters are whole
// prompts and completions. A run whose database went away then said nothing readable about why its
// activities kept failing. The reason a person needs is at the start of a message and at the root
// cause (which `rootCauseMessage` reads), so the ends are cut, with a note of how much; a stack trace
// over its limit keeps its frames (its first lines repeat the message).
//
// The worker loads this file by path with `require`, without a TypeScript loader, so it keeps to
// plain JavaScript syntax: no type annotations (the types come from the SDK's by inference).
import { DefaultFailureConverter } from '@temporalio/common';

/** Characters kept of one failure's message and of its stack trace: three levels of cause, encrypted, stay well under 4 KiB. */
export const failureTextLimits = Object.freeze({ message: 500, stackTrace: 400 });

/** `text` cut to `limit` characters, with a note of how many were cut. */
function bounded(text = '', limit = 0) {
  return text.length <= limit ? text : `${text.slice(0, limit)}… (${text.length - limit} more characters cut)`;
}

/** A stack trace within `limit`: when over it, its frames only, then cut. */
function boundedStack(stack = '', limit = 0) {
  if (stack.length <= limit) return stack;
  return bounded(stack.split('\n').filter((line) => /^\s+at /.test(line)).join('\n'), limit);
}

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
// Every level of a cause chain goes through errorToFailureInner (its causes by way of this.errorToFailure).
const unbounded = failureConverter.errorToFailureInner.bind(failureConverter);
failureConverter.errorToFailureInner = (err, payloadConverter, context) => {
  const failure = unbounded(err, payloadConverter, context);
  const message = bounded(failure.message ?? undefined, failureTextLimits.message);
  const stackTrace = boundedStack(failure.stackTrace ?? undefined, failureTextLimits.stackTrace);
  return message === failure.message && stackTrace === failure.stackTrace ? failure : { ...failure, message, stackTrace };
};
