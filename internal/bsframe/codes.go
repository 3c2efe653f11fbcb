package bsframe

import "mellium.im/xmpp/stanza"

// errorTypes are the error types of RFC 6120 §8.3.2 in the RFC's order,
// numbered from 1. Code 0 and codes above the table are unknown.
var errorTypes = [...]stanza.ErrorType{
	1: stanza.Auth,
	2: stanza.Cancel,
	3: stanza.Continue,
	4: stanza.Modify,
	5: stanza.Wait,
}

// conditions are the 22 stanza error conditions of RFC 6120 §8.3.3 in the
// RFC's order, numbered from 1. Code 0 and codes above the table are
// unknown.
var conditions = [...]stanza.Condition{
	1:  stanza.BadRequest,
	2:  stanza.Conflict,
	3:  stanza.FeatureNotImplemented,
	4:  stanza.Forbidden,
	5:  stanza.Gone,
	6:  stanza.InternalServerError,
	7:  stanza.ItemNotFound,
	8:  stanza.JIDMalformed,
	9:  stanza.NotAcceptable,
	10: stanza.NotAllowed,
	11: stanza.NotAuthorized,
	12: stanza.PolicyViolation,
	13: stanza.RecipientUnavailable,
	14: stanza.Redirect,
	15: stanza.RegistrationRequired,
	16: stanza.RemoteServerNotFound,
	17: stanza.RemoteServerTimeout,
	18: stanza.ResourceConstraint,
	19: stanza.ServiceUnavailable,
	20: stanza.SubscriptionRequired,
	21: stanza.UndefinedCondition,
	22: stanza.UnexpectedRequest,
}

// ErrorTypeCode returns the code of an error type in an Error frame:
// auth 1, cancel 2, continue 3, modify 4, wait 5 (RFC 6120 §8.3.2's order).
// It reports false for any other value, the empty one included.
func ErrorTypeCode(t stanza.ErrorType) (uint8, bool) {
	return code(errorTypes[:], t)
}

// ErrorTypeOf returns the error type whose code is c, or false if c is not
// one of the codes of ErrorTypeCode.
func ErrorTypeOf(c uint8) (stanza.ErrorType, bool) {
	return of(errorTypes[:], c)
}

// ConditionCode returns the code of a condition in an Error frame: the
// position of the condition in RFC 6120 §8.3.3, from bad-request 1 to
// unexpected-request 22. It reports false for any other value, the empty
// one included.
func ConditionCode(c stanza.Condition) (uint8, bool) {
	return code(conditions[:], c)
}

// ConditionOf returns the condition whose code is c, or false if c is not
// one of the codes of ConditionCode.
func ConditionOf(c uint8) (stanza.Condition, bool) {
	return of(conditions[:], c)
}

func code[T comparable](table []T, v T) (uint8, bool) {
	var zero T
	if v == zero {
		return 0, false
	}
	for i, w := range table {
		if w == v {
			return uint8(i), true
		}
	}
	return 0, false
}

func of[T any](table []T, c uint8) (T, bool) {
	if c == 0 || int(c) >= len(table) {
		var zero T
		return zero, false
	}
	return table[c], true
}
