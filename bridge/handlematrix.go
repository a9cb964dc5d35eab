package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/connectors/sms/pdu"
)

// HandleMatrixMessage sends what the user wrote in a portal as SMS from the
// portal's line. Only text can go by SMS: files and locations are refused with
// a reason the user sees.
func (cl *Client) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	to, ok := NumberForUserID(networkid.UserID(msg.Portal.ID))
	if !ok {
		return nil, bridgev2.WrapErrorInStatus(errors.New("alphanumeric sender")).
			WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
			WithMessage("This sender has a name instead of a number, so it cannot receive replies.")
	}
	text, err := smsText(msg.Content)
	if err != nil {
		return nil, err
	}
	line := cl.currentLine()
	if line == nil {
		return nil, bridgev2.WrapErrorInStatus(errors.New("line not connected")).
			WithErrorReason(event.MessageStatusNetworkError).WithSendNotice(true).
			WithMessage("The modem is not connected; the SMS was not sent.")
	}
	res, err := line.Send(ctx, to, text)
	if err != nil {
		cl.log.Warn("failed to send SMS", zap.String("to", MaskNumber(to)), zap.Error(err))
		return nil, sendErrorStatus(err)
	}
	cl.log.Info("sent SMS", zap.String("to", MaskNumber(to)), zap.Int("parts", res.Parts))
	return &bridgev2.MatrixMessageResponse{
		DB: &database.Message{
			ID:       networkid.MessageID("out:" + string(msg.Event.ID)),
			SenderID: UserIDForNumber(cl.meta.Number),
			Metadata: &MessageMetadata{Parts: res.Parts, MRs: res.MRs},
		},
	}, nil
}

// smsText renders the text of a Matrix message for SMS.
func smsText(content *event.MessageEventContent) (string, error) {
	switch content.MsgType {
	case event.MsgText, event.MsgNotice:
		return content.Body, nil
	case event.MsgEmote:
		return "* " + content.Body, nil
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile:
		return "", bridgev2.WrapErrorInStatus(fmt.Errorf("unsupported msgtype %s", content.MsgType)).
			WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
			WithMessage("SMS can only carry text; the file was not sent.")
	case event.MsgLocation:
		if strings.HasPrefix(content.GeoURI, "geo:") {
			return "Location: " + content.GeoURI, nil
		}
		return content.Body, nil
	default:
		return "", bridgev2.WrapErrorInStatus(fmt.Errorf("unsupported msgtype %s", content.MsgType)).
			WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).WithSendNotice(true).
			WithMessage(fmt.Sprintf("Messages of type %s can't be sent as SMS.", content.MsgType))
	}
}

// sendErrorStatus turns a line's send error into a message status the user reads.
func sendErrorStatus(err error) error {
	st := bridgev2.WrapErrorInStatus(err).WithSendNotice(true)
	var cms *sms.CMSError
	switch {
	case errors.Is(err, pdu.ErrTooLong):
		detail := err.Error()
		if _, after, ok := strings.Cut(detail, pdu.ErrTooLong.Error()+": "); ok {
			detail = after
		}
		return st.WithErrorReason(event.MessageStatusUnsupported).WithIsCertain(true).
			WithMessage("Too long for SMS: " + detail)
	case errors.Is(err, sms.ErrSendUnknown):
		return st.WithErrorReason(event.MessageStatusNetworkError).WithIsCertain(false).
			WithMessage("The modem did not answer in time: the SMS may or may not have been sent. Check with the contact before sending it again.")
	case errors.As(err, &cms):
		if cms.Temporary() {
			return st.WithErrorReason(event.MessageStatusNetworkError).WithStatus(event.MessageStatusRetriable).
				WithMessage(fmt.Sprintf("The mobile network refused the SMS for now (%v). Try again in a moment.", cms))
		}
		return st.WithErrorReason(event.MessageStatusNetworkError).WithStatus(event.MessageStatusFail).WithIsCertain(true).
			WithMessage(fmt.Sprintf("The mobile network refused the SMS (%v).", cms))
	default:
		return st.WithErrorReason(event.MessageStatusNetworkError).
			WithMessage(fmt.Sprintf("The SMS was not sent: %v", err))
	}
}
